"""One module per resource; each route validates, calls one function, returns a model."""
