# The two commands a newcomer needs: `make up` runs the system, `make test` tests it.
# Both install what is missing first (a virtualenv, the Python packages, the Kafka jars).

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: install up test unit integration reliability lint typecheck schemas bench clean

install: $(STAMP)
	@# The dashboard's browser test drives Debian's Chromium (Playwright cannot fetch its own here).
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "Chromium could not be installed: the dashboard's browser test will be skipped"

$(STAMP): pyproject.toml infra/kafka/pom.xml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "from infra.kafka.launcher import ensure_jars; ensure_jars()"
	touch $(STAMP)

up: install
	$(VENV)/bin/oee up

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration tests/e2e

# Also part of `make test`: faults of processes, Kafka (one node and a three-node cluster), PostgreSQL.
reliability: install
	$(PY) -m pytest -q tests/reliability

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy services schemas infra bench tests

schemas: install
	$(PY) -m schemas.export

clean:
	rm -rf .oee
