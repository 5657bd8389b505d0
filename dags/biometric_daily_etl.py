"""Daily BIOMETRICS ETL: the previous UTC day's readings, from the application database to the warehouse.

`extract >> transform >> load >> validate >> backup`, each stage a container of its pinned image
(see `biometrics_stage.py` for the image, the data day, the Variables and the Connections).
`load` migrates the warehouse schema before loading. Re-running a day replaces that day's results;
a manual run with the param `data_day` (YYYY-MM-DD) processes that day.
"""

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, chain
from biometrics_stage import DEFAULT_ARGS, data_day_params, stage_task

with DAG(
    dag_id="biometric_daily_etl",
    # a trigger timetable, not the cron string: with [scheduler] create_cron_data_intervals on, a
    # string is a data-interval timetable, whose 02:00 run's logical date is the day before, and the
    # run would process the day before yesterday
    schedule=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
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
