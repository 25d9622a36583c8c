# shoprank: the commands people type. `make help` lists them.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PROFILE ?= default

.DEFAULT_GOAL := help
.PHONY: help setup demo pipeline up test lint bench clean serve airflow servers

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.lock requirements-dev.lock requirements-data.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock -r requirements-dev.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

setup: $(STAMP) ## create .venv from the pinned lock file (idempotent)

demo: $(STAMP) ## quick look: simulate the $(PROFILE) data set and check it against the contract
	$(BIN)/shoprank simulate --profile $(PROFILE)
	$(BIN)/shoprank check data/raw

pipeline: $(STAMP) ## `dvc repro`: the whole pipeline of dvc.yaml on params.yaml's profile, up to the packaged champion
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

up: pipeline serve ## the main command: the pipeline, then the champion served on :3000 (search page at /ui)

test: lint ## lint, then the test suite (what CI runs); fails if a server the tests need is missing
	@[ "$${SHOPRANK_SKIP_SERVERS:-}" = 1 ] || scripts/servers.sh check
	$(BIN)/python -m pytest

servers: ## install what the integration tests start: redis-server, PostgreSQL, chromium + chromedriver (apt)
	scripts/servers.sh install

LINTED := src dags serving features bench tests

lint: $(STAMP) ## ruff (lint and format) and mypy over the whole tree; pre-commit runs the same
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

bench: $(STAMP) ## run the benchmarks: bench/results.json and the tables made from it (docs/benchmarks.md, README)
	$(BIN)/python -m bench

clean: ## remove generated data (keeps .venv, the DVC cache and the champion history)
	rm -rf data/raw data/quarantine data/validated data/features data/training models/candidates

serve: $(STAMP) ## package the champion (if new) and serve it with BentoML on serve.host:3000 (search page at /ui)
	$(BIN)/shoprank package
	exec $(BIN)/python -m shoprank.ranking.launch --port $${PORT:-3000}

AIRFLOW_PORT ?= 8080
airflow: $(STAMP) ## Airflow 3 on localhost:$(AIRFLOW_PORT): UI, scheduler, dags/ (AIRFLOW_HOME=.airflow, SQLite)
	@mkdir -p .airflow
	@test -s .airflow/passwords.json || $(BIN)/python -c "import json, secrets; print(json.dumps({'admin': secrets.token_urlsafe(12)}))" > .airflow/passwords.json
	@chmod 600 .airflow/passwords.json
	@echo "Airflow UI: http://localhost:$(AIRFLOW_PORT)   user: admin   password: $$($(BIN)/python -c "import json; print(json.load(open('.airflow/passwords.json'))['admin'])")"
	@echo "(the password is in .airflow/passwords.json; trigger shoprank_training in the UI, see docs/orchestration.md)"
	AIRFLOW_HOME=$(CURDIR)/.airflow AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags AIRFLOW__CORE__LOAD_EXAMPLES=False \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=$(CURDIR)/.airflow/passwords.json \
	AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=$(AIRFLOW_PORT) \
	SHOPRANK_HOME=$(CURDIR) SHOPRANK_PARAMS=$${SHOPRANK_PARAMS:-$(CURDIR)/params.yaml} \
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/airflow standalone
