"""Test wiring: real Kafka and PostgreSQL fixtures live in tests/fixtures/ as plugins."""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.settings",
]
