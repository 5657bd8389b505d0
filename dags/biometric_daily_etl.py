"""Daily BIOMETRICS ETL: the previous UTC day's readings, from the application database to the warehouse.

`extract >> transform >> load >> validate >> backup`, each stage a container of its pinned image
(see `biometrics_stage.py` for the image, the data day, the Variables and the Connections).
`load` migrates the warehouse schema before loading. Re-running a day replaces that day's results;
a manual run with the param `data_day` (YYYY-MM-DD) processes that day.
"""

import pendulum
from airflow.sdk import DAG, chain
from biometrics_stage import DEFAULT_ARGS, data_day_params, stage_task

with DAG(
    dag_id="biometric_daily_etl",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    params=data_day_params(),
    tags=["biometrics", "etl", "daily"],
    doc_md=__doc__,
):
    chain(
        stage_task("extract", "readings"),
        stage_task("transform", "readings"),
        stage_task("load", "readings"),
        stage_task("validate", "readings"),
        stage_task("backup", "create"),
    )
