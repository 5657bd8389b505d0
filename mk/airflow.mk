# mk/airflow.mk - Airflow 3 for the DAGs in dags/ (included by the top-level Makefile).
#
# Airflow lives in its own virtualenv (.venv-airflow), never in .venv and never in a stage image.
# The tests in tests/airflow run from .venv and call into .venv-airflow.

AIRFLOW_VENV       ?= .venv-airflow
AIRFLOW_PYTHON     ?= python3
AIRFLOW_HOME_DEV   ?= build/airflow-home
COMPOSE_FILE       ?= compose/docker-compose.yml
# Integration images: from the local debootstrap bases as root (CI cannot pull), else the official base.
INTEGRATION_OFFLINE ?= $(if $(filter 0,$(shell id -u)),1,0)

AIRFLOW_DEV_ENV = AIRFLOW_HOME=$(abspath $(AIRFLOW_HOME_DEV)) AIRFLOW__CORE__DAGS_FOLDER=$(abspath dags) \
	AIRFLOW__CORE__LOAD_EXAMPLES=False

.PHONY: airflow-venv airflow-dags compose-config integration-setup test-docker test-airflow

$(AIRFLOW_VENV)/.biometrics-installed: scripts/airflow-venv.sh
	@scripts/airflow-venv.sh '$(AIRFLOW_VENV)' '$(AIRFLOW_PYTHON)'

airflow-venv: $(AIRFLOW_VENV)/.biometrics-installed ## Create .venv-airflow: Airflow 3.3 + the Docker provider (pinned)

airflow-dags: airflow-venv ## Import every DAG in dags/ with Airflow and list import errors and tasks
	@mkdir -p $(AIRFLOW_HOME_DEV)
	@$(AIRFLOW_DEV_ENV) $(AIRFLOW_VENV)/bin/python -c 'import sys; from pathlib import Path; \
	from airflow.dag_processing.dagbag import BundleDagBag; d = Path("dags").resolve(); \
	bag = BundleDagBag(dag_folder=d, bundle_path=d, bundle_name="dags-folder"); \
	[print(f, e, sep="\n", file=sys.stderr) for f, e in bag.import_errors.items()]; \
	[print(i, " >> ".join(t.task_id for t in dag.topological_sort())) for i, dag in bag.dags.items()]; \
	sys.exit(1 if bag.import_errors else 0)'

compose-config: ## Validate compose/docker-compose.yml (docker-compose config; compose/.env or the example)
	@env_file=compose/.env; [ -f $$env_file ] || env_file=compose/.env.example; \
	docker-compose -f $(COMPOSE_FILE) --env-file $$env_file config --quiet && echo "$(COMPOSE_FILE): valid ($$env_file)"

integration-setup: venv docker-engine airflow-venv ## Engine, stage images (OFFLINE as root) and Airflow venv for tests/docker and tests/airflow
	@$(MAKE) --no-print-directory build OFFLINE=$(INTEGRATION_OFFLINE)

test-docker: integration-setup ## Run the Docker image tests (tests/docker)
	$(VENV_BIN)/python -m pytest tests/docker $(PYTEST_ARGS)

test-airflow: integration-setup ## Run the DAG and end-to-end Airflow tests (tests/airflow)
	$(VENV_BIN)/python -m pytest tests/airflow $(PYTEST_ARGS)
