"""Errors that end a process with one clear line instead of a stack trace."""


class DependencyUnavailable(RuntimeError):
    """Kafka or PostgreSQL could not be reached; the message names where and which setting."""
