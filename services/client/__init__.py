"""Clients of the public API: the `oee order`, `oee orders` and `oee status` commands."""
