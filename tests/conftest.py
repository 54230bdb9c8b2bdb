"""Test wiring: real Kafka and PostgreSQL fixtures live in tests/fixtures/ as plugins.

`make test` runs the suite on two pytest-xdist workers with `--dist loadfile`: most
tests wait on a broker, a database or a fault's clock, so two run in the time of
one. Each worker starts its own broker and database; a file stays on one worker,
so module-scoped systems start once, and every test of the three-node cluster lives
in one file (`tests/reliability/test_broker_faults.py`), so one cluster runs at a time.
"""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.postgres",
    "tests.fixtures.settings",
]
