"""`make demo`'s command: the daily job on the embedded default, summarised."""

from __future__ import annotations

import subprocess

from biometrics_testkit.harness import script


def test_demo_runs_the_five_stages_and_summarises(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([script("biometrics-demo"), "--dir", str(out), "--users", "300", "--date", "2026-01-05"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for stage in ("extract", "transform", "load", "validate", "backup"):
        assert f"  {stage}" in text
    for reason in ("duplicate", "missing_value", "out_of_range", "outside_data_day", "unknown_metric_type",
                   "unknown_unit"):
        assert f"{reason}=" in text, reason
    assert "checks passed: 6/6" in text
    assert (out / "warehouse.db").exists()
    assert list((out / "staging").rglob("backups/2026-01-05/*"))
