"""Conditional orders' trigger engine: the pure book (`book.py`) and the process around it."""
