# cdx: the two commands are `make demo` and `make test`. Both set everything up first
# (Debian packages, a virtualenv with cdx installed, the Kafka jars) and are idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cdx-installed

.PHONY: setup system venv jars services demo test test-chaos test-realtime test-sqlserver test-interop test-ha lint unit bench down clean test-rollout test-ops test-cluster

setup: system venv jars

system:
	@bash cdx/infra/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

jars: venv
	@$(BIN)/python -m cdx.infra.kafka jars >/dev/null

services: setup
	@$(BIN)/python -m cdx.infra.kafka up
	@$(BIN)/python -m cdx.infra.postgres up

demo: services
	$(BIN)/cdx demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

# Kafka and PostgreSQL start (tests/conftest.py: prestart) while lint runs; the test session finds them up.
test: setup
	@$(BIN)/python -c 'from tests.conftest import prestart; prestart()' >$(VENV)/prestart.log 2>&1 & \
	$(MAKE) --no-print-directory lint; status=$$?; wait; exit $$status
	$(BIN)/python -m pytest -q

# The SQL Server tests (marker `sqlserver`) against your server: CDX_TEST_SQLSERVER_DSN is a pyodbc
# connection string of a database the tests may create and drop objects in (docs/extensions.md).
test-sqlserver: setup
	@test -n "$$CDX_TEST_SQLSERVER_DSN" || { echo "set CDX_TEST_SQLSERVER_DSN to a pyodbc connection string"; exit 2; }
	$(BIN)/python -m pytest -q -m sqlserver

test-chaos: setup
	$(BIN)/python -m pytest -q -m chaos

# Operations controls end to end under load (pause/resume, schedule windows, replay on every hop): not in `make test`.
test-ops: setup
	$(BIN)/python -m pytest -q -m ops_long tests/ops

# Active/standby capture and uploads (tests/ha, marker `ha`, not in `make test`): 10 kill -9 takeovers each,
# SIGSTOP zombies, SIGTERM handover; prints the takeover times (minutes).
test-ha: services
	$(BIN)/python -m pytest -q -s -m ha tests/ha

# Topology changes rolled out with `cdx topology apply` under load, every role running (marker rollout_long).
test-rollout: services
	$(BIN)/python -m pytest -q -m rollout_long

# The whole pipeline on the secured 3-broker cluster (SASL_SSL, SCRAM, ACLs), broker kill -9 and rolling restarts
# under load (marker `cluster`, not in `make test`; tens of minutes on a busy machine). -s prints the failover figures.
test-cluster: setup
	$(BIN)/python -m pytest -q -s -m cluster

# Real-time Service stress tests (SIGKILL mid-request, schemathesis fuzzing, SQLite storm): not in `make test`.
test-realtime: services
	$(BIN)/python -m pytest -q -m realtime_long tests/realtime

# Debezium / Kafka Connect / schema-registry interop (tests/interop, marker `interop`, not in `make test`):
# resolves Connect, Debezium and Apicurio from Maven Central on first use (minutes), then runs real Connect.
test-interop: setup
	$(BIN)/python -m pytest -q -m interop tests/interop

bench: services
	$(BIN)/python -m bench

down:
	-@$(BIN)/python -m cdx.infra.kafka down --brokers 3
	-@$(BIN)/cdx dev kafka down --brokers 3 --security sasl_ssl
	-@$(BIN)/python -m cdx.infra.kafka down
	-@$(BIN)/python -m cdx.infra.postgres down

clean: down
	rm -rf .cdx
