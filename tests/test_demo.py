"""`make demo`'s command: the daily job on the embedded default, summarised."""

from __future__ import annotations

import datetime as dt
import subprocess

from biometrics_testkit import sample
from biometrics_testkit.compare import assert_warehouse_matches, source_records
from biometrics_testkit.harness import script


def test_demo_runs_the_five_stages_and_summarises(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([script("biometrics-demo"), "--dir", str(out), "--users", "300", "--date", "2026-01-05"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for stage in ("extract", "transform", "load", "validate", "backup"):
        assert f"  {stage}" in text
    for reason in ("conflicting_reading_id", "duplicate", "missing_value", "out_of_range", "outside_data_day",
                   "unknown_metric_type", "unknown_unit"):
        assert f"{reason}=" in text, reason
    assert "checks passed: 8/8" in text
    assert (out / "warehouse.db").exists()
    assert list((out / "staging").rglob("backups/2026-01-05/*"))
    # the SQLite warehouse as the independent reference computes it from the demo's (seeded) sample day
    day = dt.date(2026, 1, 5)
    records = source_records(f"sqlite:///{out / 'app.db'}", day, sample.generate_day(day, users=300).vendors)
    reference = assert_warehouse_matches(f"sqlite:///{out / 'warehouse.db'}", day, records)
    assert reference.reject_counts()["conflicting_reading_id"] == 2
