"""Shared by the contender scripts that run inside their own venvs (stdlib only)."""

import argparse
import json
import time


def contender_args(*extra: tuple[str, dict]) -> argparse.Namespace:
    """The arguments every contender takes (source, warehouse, the day's window), plus its own."""
    parser = argparse.ArgumentParser()
    for name in ("--src-url", "--wh-url", "--day", "--start", "--end"):
        parser.add_argument(name, required=True)
    for name, options in extra:
        parser.add_argument(name, **options)
    return parser.parse_args()

# The original design's aggregation (docs: ORIGINAL-DESIGN.md, PostgresOperator transform_metrics),
# with the schema-qualified raw table as the only change.
ORIGINAL_GROUP_BY = """
INSERT INTO daily_metrics (date, user_id, metric_type, value)
SELECT
    DATE(created_at) as date,
    user_id,
    metric_type,
    AVG(value) as value
FROM {raw_table}
WHERE DATE(created_at) = '{ds}'
GROUP BY DATE(created_at), user_id, metric_type
"""


class Phases:
    """Wall time of named phases, printed as the last stdout line (JSON)."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.phases = {}
        self.info = {}

    def phase(self, name):
        phases = self.phases

        class _P:
            def __enter__(self_):
                self_.t = time.monotonic()

            def __exit__(self_, *exc):
                phases[name] = round(time.monotonic() - self_.t, 3)

        return _P()

    def emit(self):
        print(json.dumps({"phases": self.phases, **self.info,
                          "in_process_seconds": round(time.monotonic() - self.t0, 3)}), flush=True)
