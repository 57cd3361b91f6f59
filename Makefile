# make run  — install, start PostgreSQL/RabbitMQ if needed, start the three
#             services (relays included), load demo data, print the URLs.
# make test — install, start PostgreSQL/RabbitMQ if needed, run the whole suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-stamp
export PSYCOPG_WAIT_FUNC := wait_select

.PHONY: install infra run stop test faults bench bench-evaluation bench-programme bench-members bench-audit bench-imports bench-readmodels reset clean

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

# The fault suite alone (make test runs it too): workers, brokers and databases
# killed under load, hostile input, forged events. Private RabbitMQ/PostgreSQL
# processes on loopback ports for the cases that kill them.
faults: install infra
	$(VENV)/bin/pytest -q --timeout 300 -m faults tests

# Validate deploy/: k8s manifests, Prometheus config/rules/rule tests (promtool),
# Grafana panels and alerts against the exported metrics, docker compose config.
.PHONY: check-deploy
check-deploy: install infra
	scripts/check-deploy.sh

# Every benchmark in one run beside raw baselines measured in the same run,
# written to docs/benchmarks.md (the previous run's figures kept beside them).
# bench-evaluation fills the store with 1,000,000 events: about ten minutes.
bench: install infra
	$(VENV)/bin/python -m bench.run_all

bench-evaluation: install infra
	$(VENV)/bin/python -m bench.bench_evaluation

# The programme's school-wide dashboard (50 colleges, 1,000 branches) beside a no-op RPC.
bench-programme: install infra
	$(VENV)/bin/python -m bench.bench_programme

# bench-members: a year of records for 30,000 members (about 1.2 million), then the
# pioneer index for all and the derived indicators for all branches: ten minutes or so.
bench-members: install infra
	$(VENV)/bin/python -m bench.bench_members

# bench-readmodels: the rating read model's catch-up and rebuild beside a raw read
# of the same rows (200,000 events; --events 1000000 for the full figure).
bench-readmodels: install infra
	$(VENV)/bin/python -m bench.bench_readmodels

# Verify the hash chain over 1,000,000 events beside a raw read of the same rows, and
# as-of lookups through RPC with 1,000,000 events in the store beside a no-op RPC.
bench-audit: install infra
	$(VENV)/bin/python -m bench.bench_audit

# 30,000 members from one .xlsx (preview and apply) beside a raw psycopg COPY.
bench-imports: install infra
	$(VENV)/bin/python -m bench.bench_imports

# Drop the three services' local databases (all events, all read models) and
# the event queues that still hold what was published from them.
reset: stop
	-rabbitmqctl -q list_queues name 2>/dev/null | grep '^evt-' | xargs -r -n1 rabbitmqctl -q delete_queue
	for db in lianchuang_organizations lianchuang_evaluation lianchuang_notifications; do \
	  psql -h $${POSTGRES_HOST:-127.0.0.1} -U $${POSTGRES_USER:-postgres} -d postgres -qc "DROP DATABASE IF EXISTS $$db WITH (FORCE)"; done

clean: stop
	rm -rf $(VENV) .run
