"""The benchmark's measurements: the machine's CPU time beside the child's, and the CPU floor the
report derives from it (the figures the README's per-core accounting rests on)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import procs  # noqa: E402
import report  # noqa: E402

# skipped only where the file is missing (not Linux): on Linux a reader that fails must fail the tests
NO_PROC_STAT = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="no /proc/stat on this system")
BURN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"


@NO_PROC_STAT
def test_machine_cpu_covers_the_childs_own_cpu(tmp_path):
    m = procs.run_measured([sys.executable, "-c", BURN], env=None, log_prefix=tmp_path / "burn", timeout=60)
    assert m.ok
    own = m.user_s + m.sys_s
    assert own >= 0.6
    # the machine's busy time over the child's life includes the child's (clock ticks: 10 ms each)
    assert m.machine_cpu_s >= own - 0.05


@NO_PROC_STAT
def test_machine_busy_time_only_grows():
    first = procs.machine_busy_s()
    assert first is not None
    sum(i * i for i in range(200_000))
    assert procs.machine_busy_s() >= first


def _result(cores: int, ceiling: tuple[float, float], pipeline: tuple[float, float]) -> dict:
    return {"machine": {"cores": cores}, "contenders": {
        "ceiling": {"status": "ok", "wall_s": ceiling[0], "machine_cpu_s": ceiling[1]},
        "pipeline": {"status": "ok", "wall_s": pipeline[0], "machine_cpu_s": pipeline[1]},
        "seed-style": {"status": "failed", "error": "venv"},
    }}


def test_the_pipeline_floor_is_its_cpu_spread_over_every_core():
    cpu = report.cpu_summary(_result(2, ceiling=(16.0, 24.0), pipeline=(40.0, 68.0)))
    assert cpu["pipeline_floor_s"] == 34.0            # 68 CPU-s over 2 cores
    assert cpu["pipeline_floor_x_ceiling"] == 2.12    # 34 / 16
    assert cpu["pipeline_cpu_x_ceiling_cpu"] == 2.83  # 68 / 24
    assert cpu["by_contender"]["pipeline"]["cores_busy"] == 1.7
    assert "seed-style" not in cpu["by_contender"]   # a failed contender has no figure
    text = "\n".join(report._cpu_lines(cpu))
    assert "cannot take less than 34.00 s, 2.12 x the ceiling's time" in text


def test_no_floor_without_both_figures():
    result = _result(4, ceiling=(16.0, 24.0), pipeline=(40.0, 68.0))
    result["contenders"]["ceiling"]["machine_cpu_s"] = None
    cpu = report.cpu_summary(result)
    assert "pipeline_floor_s" not in cpu and set(cpu["by_contender"]) == {"pipeline"}
    result["contenders"]["pipeline"]["machine_cpu_s"] = None
    assert report.cpu_summary(result) is None and report._cpu_lines(None) == []
