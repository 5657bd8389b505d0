"""dlt contender (runs in bench/.venvs/dlt): sql_database's sql_table into the postgres
destination, then the original GROUP BY into daily_metrics.

The day (or the capped window of it) is selected with a query_adapter_callback adding
``created_at >= start AND created_at < end``, so PostgreSQL uses the created_at index, as
the other contenders do.
"""

import datetime as dt
import os
import sys

import dlt
import psycopg2
from dlt.sources.sql_database import sql_table

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ORIGINAL_GROUP_BY, Phases, contender_args  # noqa: E402


def main():
    a = contender_args(("--backend", dict(default="pyarrow")), ("--loader-file-format", dict(default=None)), ("--pipelines-dir", dict(required=True)))
    p = Phases()
    start = dt.datetime.fromisoformat(a.start)
    end = dt.datetime.fromisoformat(a.end)

    def day_window(query, table):
        return query.where(table.c.created_at >= start).where(table.c.created_at < end)

    resource = sql_table(credentials=a.src_url, table="raw_biometric_data", backend=a.backend,
                         query_adapter_callback=day_window)
    dsn = a.wh_url.replace("postgresql+psycopg2://", "postgresql://")
    pipeline = dlt.pipeline(pipeline_name=f"bench_{a.backend}", pipelines_dir=a.pipelines_dir,
                            destination=dlt.destinations.postgres(credentials=dsn),
                            dataset_name="dlt_raw", progress=None)
    with p.phase("extract"):
        pipeline.extract(resource, loader_file_format=a.loader_file_format)
    with p.phase("normalize"):
        pipeline.normalize()
    with p.phase("load"):
        info = pipeline.load()
    info.raise_on_failed_jobs()
    p.info["loader_file_formats"] = sorted(
        {j.job_file_info.file_format for pkg in info.load_packages for j in pkg.jobs["completed_jobs"]})
    with p.phase("group_by"), psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(ORIGINAL_GROUP_BY.format(raw_table="dlt_raw.raw_biometric_data", ds=a.day))
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM dlt_raw.raw_biometric_data")
        p.info["rows"] = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM daily_metrics")
        p.info["groups"] = cur.fetchone()[0]
    p.info["versions"] = {"dlt": dlt.__version__}
    p.emit()


if __name__ == "__main__":
    main()
