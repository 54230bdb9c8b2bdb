"""Plumbing shared by every process: settings, logging, Kafka and PostgreSQL edges."""
