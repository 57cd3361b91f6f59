# make run  — install, start PostgreSQL/RabbitMQ if needed, start the three
#             services (relays included), load demo data, print the URLs.
# make test — install, start PostgreSQL/RabbitMQ if needed, run the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-stamp
export PSYCOPG_WAIT_FUNC := wait_select

.PHONY: install infra run stop test bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

infra:
	scripts/ensure-infra.sh

run: install infra
	scripts/run.sh

stop:
	scripts/stop.sh

test: install infra
	$(VENV)/bin/pytest -q --timeout 300 tests

bench: install infra
	$(VENV)/bin/python -m bench.bench_foundation

clean: stop
	rm -rf $(VENV) .run
