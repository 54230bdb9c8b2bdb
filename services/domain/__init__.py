"""Pure domain values shared by the services: tokens and their units."""
