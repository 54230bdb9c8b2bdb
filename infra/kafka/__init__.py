"""A real Apache Kafka broker for development and tests, run without Docker."""
