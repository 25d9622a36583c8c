# shoprank: the commands people type. `make help` lists them.
PY      ?= python3.11
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PROFILE ?= default

.DEFAULT_GOAL := help
.PHONY: help setup demo pipeline test lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

setup: $(STAMP) ## create .venv from the pinned lock file (idempotent)

demo: $(STAMP) ## the main job: simulate the $(PROFILE) data set and check it against the contract
	$(BIN)/shoprank simulate --profile $(PROFILE)
	$(BIN)/shoprank check data/raw

pipeline: $(STAMP) ## the main command: `dvc repro`, the whole pipeline of dvc.yaml (params.yaml's profile)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: $(STAMP) ## run the test suite
	$(BIN)/python -m pytest

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP) ## run the benchmarks in bench/ and print figures
	$(BIN)/python -m bench

clean: ## remove generated data (keeps .venv)
	rm -rf data/raw data/quarantine data/validated data/features metrics models/candidates
