#!/usr/bin/env bash
# Create the Airflow virtual environment (default .venv-airflow): Apache Airflow, the Docker
# provider and the FAB provider (the compose deployment's auth manager, which its init runs), pinned. It is kept apart from .venv (the stages' and tests' environment) so the two
# dependency sets never constrain each other, and it never goes into a stage image.
# Idempotent: a venv whose stamp matches the pins is kept.
#
# usage: scripts/airflow-venv.sh [VENV] [PYTHON]
# env:   AIRFLOW_VERSION (3.3.2), AIRFLOW_DOCKER_PROVIDER_VERSION (4.6.1), AIRFLOW_FAB_PROVIDER_VERSION (3.10.2)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-airflow}
python=${2:-python3}
pins=("apache-airflow==${AIRFLOW_VERSION:-3.3.2}" "apache-airflow-providers-docker==${AIRFLOW_DOCKER_PROVIDER_VERSION:-4.6.1}"
      "apache-airflow-providers-fab==${AIRFLOW_FAB_PROVIDER_VERSION:-3.10.2}")
stamp="$venv/.biometrics-installed"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${pins[*]}" ] && [ -x "$venv/bin/airflow" ]; then
    exit 0
fi
echo "airflow-venv: installing ${pins[*]} into $venv" >&2
start=$(date +%s)
[ -x "$venv/bin/python" ] || scripts/ensure-venv.sh "$python" "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" \
    2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2)
check_home=$(mktemp -d)   # importing Airflow creates $AIRFLOW_HOME/logs: keep that out of ~/airflow
AIRFLOW_HOME=$check_home "$venv/bin/python" -c "import airflow.sdk, airflow.providers.docker.operators.docker"
rm -rf "$check_home"
echo "${pins[*]}" >"$stamp"
echo "airflow-venv: ready in $(( $(date +%s) - start ))s" >&2
