# BIOMETRICS ETL — build, test and run the pipeline.  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VENV_BIN := $(VENV)/bin
VERSION := $(shell cat VERSION)
PACKAGES := libs/core libs/testkit services/extract services/transform services/load services/validate services/backup
PYTEST_ARGS ?=

-include mk/*.mk

.PHONY: help venv demo test test-unit system-deps version clean

help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | sort -u | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(VENV_BIN)/python:
	@scripts/ensure-venv.sh "$(PYTHON)" "$(VENV)"

$(VENV)/.installed: $(VENV_BIN)/python $(foreach p,$(PACKAGES),$(p)/pyproject.toml)
	$(VENV_BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV_BIN)/pip install --quiet --disable-pip-version-check $(foreach p,$(PACKAGES),-e $(p))
	@touch $@

venv: $(VENV)/.installed ## Create .venv with every package installed (editable)

demo: venv ## Run the daily pipeline end to end on the embedded default (SQLite, local staging)
	$(VENV_BIN)/biometrics-demo --dir demo-output

system-deps: ## Install and start what the tests need (Debian, as root): PostgreSQL, Docker engine, registry
	scripts/system-deps.sh

# system packages first: the integration setup (engine, base images, stage images, Airflow venv) needs them
test: system-deps venv integration-setup ## Install what the tests need and run the whole suite (real PostgreSQL, S3, Docker, Airflow)
	$(VENV_BIN)/python -m pytest $(PYTEST_ARGS)
	@# the benchmark's smoke run: it must complete and write its JSON; no time is asserted
	$(MAKE) --no-print-directory bench SIZE=100000

test-unit: venv ## Run the tests that need no Docker engine or Airflow
	$(VENV_BIN)/python -m pytest -m "not docker and not airflow" $(PYTEST_ARGS)

version: ## Stamp VERSION into every package's pyproject.toml
	@for p in $(PACKAGES); do sed -i -E 's/^version = "[^"]*"/version = "$(VERSION)"/' $$p/pyproject.toml; done
	@echo "packages at $(VERSION)"

clean: ## Remove the demo output and caches
	rm -rf demo-output .pytest_cache build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
