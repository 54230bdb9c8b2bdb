"""The router: turns submitted orders into route plans and executions."""
