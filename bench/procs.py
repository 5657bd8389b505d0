"""Run a child process and measure it: wall time, CPU time and peak RSS from the OS.

Peak RSS is ``ru_maxrss`` from ``os.wait4`` on the child: the largest resident set of the
child or of any descendant it waited for (Linux reports it in KiB). For a shell pipeline it is
the largest of the pipeline's processes. Server-side memory (PostgreSQL backends) is not in it.

The child's own CPU time leaves out the server's work (the COPYs, index builds and aggregates
run in PostgreSQL's processes), so the machine's CPU time over the same interval is measured too,
from ``/proc/stat``: everything the machine ran meanwhile, the server included (and whatever else
shares the machine, which the load average tells).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Measured:
    argv: list[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_kib: int
    stdout_path: str
    stderr_path: str
    timed_out: bool = False
    last_json: dict | None = field(default=None)
    machine_cpu_s: float | None = None  # CPU time of the whole machine while the child ran

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, path: str, n: int = 15) -> str:
        try:
            return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def error_text(self) -> str:
        why = "timed out" if self.timed_out else f"exit {self.returncode}"
        return f"{why}: {self.tail(self.stderr_path) or self.tail(self.stdout_path)}"


def last_json_line(path: str) -> dict | None:
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    if not lines:
        return None
    try:
        v = json.loads(lines[-1])
        return v if isinstance(v, dict) else {"value": v}
    except ValueError:
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_s() -> float | None:
    """CPU seconds the machine has spent busy since boot, summed over its cores (``/proc/stat``:
    user, nice, system, irq and softirq; idle, iowait and the hypervisor's steal are not busy)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / _CLOCK_TICKS


def run_measured(argv: list[str], *, env: dict | None, log_prefix: Path, timeout: float,
                 cwd: str | None = None) -> Measured:
    """Run argv with stdout/stderr to log files; wait with wait4 to get its rusage."""
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = f"{log_prefix}.stdout", f"{log_prefix}.stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        busy0 = machine_busy_s()
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - t0
        busy1 = machine_busy_s()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: keep Popen consistent
    return Measured(argv=argv, returncode=proc.returncode, wall_s=wall, user_s=ru.ru_utime,
                    sys_s=ru.ru_stime, max_rss_kib=ru.ru_maxrss, stdout_path=out_path,
                    stderr_path=err_path, timed_out=timed_out.is_set(),
                    last_json=last_json_line(out_path),
                    machine_cpu_s=None if busy0 is None or busy1 is None else round(busy1 - busy0, 2))
