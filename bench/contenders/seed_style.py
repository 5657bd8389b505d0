"""Seed-style baseline: what the original design's Python tasks do (runs in bench/.venvs/pandas).

pandas.read_sql of the day from the source, DataFrame.to_sql into the warehouse's
raw_biometric_data, then the original INSERT … SELECT … AVG … GROUP BY into daily_metrics.
No cleaning at all.
"""

import os
import sys

import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ORIGINAL_GROUP_BY, Phases, contender_args  # noqa: E402


def main():
    a = contender_args()
    p = Phases()
    src = sa.create_engine(a.src_url)
    wh = sa.create_engine(a.wh_url)
    with p.phase("read_sql"):
        df = pd.read_sql(
            sa.text("SELECT * FROM raw_biometric_data WHERE created_at >= :start AND created_at < :end"),
            src, params={"start": a.start, "end": a.end},
        )
    with p.phase("to_sql"):
        df.to_sql("raw_biometric_data", wh, if_exists="append", index=False)
    with p.phase("group_by"), wh.begin() as conn:
        conn.exec_driver_sql(ORIGINAL_GROUP_BY.format(raw_table="raw_biometric_data", ds=a.day))
    with wh.connect() as conn:
        p.info["rows"] = int(len(df))
        p.info["groups"] = conn.exec_driver_sql("SELECT count(*) FROM daily_metrics").scalar()
    p.info["versions"] = {"pandas": pd.__version__, "sqlalchemy": sa.__version__}
    p.emit()


if __name__ == "__main__":
    main()
