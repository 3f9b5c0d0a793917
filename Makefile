# cdx: the two commands are `make demo` and `make test`. Both set everything up first
# (Debian packages, a virtualenv with cdx installed, the Kafka jars) and are idempotent.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cdx-installed

.PHONY: setup system venv jars services demo test test-chaos lint unit bench down clean

setup: system venv jars

system:
	@bash infra/setup-system.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

jars: venv
	@$(BIN)/python -m infra.kafka jars >/dev/null

services: setup
	@$(BIN)/python -m infra.kafka up
	@$(BIN)/python -m infra.postgres up

demo: services
	$(BIN)/cdx demo

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -q

test-chaos: setup
	$(BIN)/python -m pytest -q -m chaos

bench: services
	$(BIN)/python -m bench

down:
	-@$(BIN)/python -m infra.kafka down --brokers 3
	-@$(BIN)/python -m infra.kafka down
	-@$(BIN)/python -m infra.postgres down

clean: down
	rm -rf .cdx
