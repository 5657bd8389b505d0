"""Summarise py-spy's raw (collapsed-stack) output: where a stage's wall time goes.

Each line of the raw format is ``frame;frame;…;leaf COUNT``; a frame is
``function (file:line)``. Samples are wall-clock (py-spy --idle), so time spent waiting for
PostgreSQL shows up in the frame that waits.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::(?P<line>\d+))?\)$")


def _key(frame: str, line: bool = False) -> str:
    """function (shortened file[:line])."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    f = m["file"]
    for marker in ("site-packages/", "/src/", "lib/python3.11/"):
        if marker in f:
            f = f.split(marker, 1)[1]
            break
    return f"{m['func']} ({f}:{m['line']})" if line and m["line"] else f"{m['func']} ({f})"


_WRAPPERS = ("click/", "biometrics_core/cli.py", "<frozen", "runpy.py")


def summarise(raw_path: str, top: int = 12) -> dict:
    self_c: Counter = Counter()
    line_c: Counter = Counter()
    incl_c: Counter = Counter()
    total = 0
    for line in Path(raw_path).read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        total += n
        raw = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not raw:
            continue
        frames = [_key(f) for f in raw]
        self_c[frames[-1]] += n
        line_c[_key(raw[-1], line=True)] += n
        for f in set(frames):
            if not any(w in f for w in _WRAPPERS):
                incl_c[f] += n
    pct = lambda c: round(100.0 * c / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "self": [[f, pct(c)] for f, c in self_c.most_common(top)],
        "self_lines": [[f, pct(c)] for f, c in line_c.most_common(top)],
        "inclusive": [[f, pct(c)] for f, c in incl_c.most_common(top + 4)
                      if not f.startswith(("<module>", "main ("))][:top],
    }


def format_summary(stage: str, s: dict) -> str:
    out = [f"--- {stage}: {s['samples']} samples (wall clock)", "  self %   function"]
    out += [f"  {p:6.1f}   {f}" for f, p in s["self"]]
    out += ["  self %   line"]
    out += [f"  {p:6.1f}   {f}" for f, p in s["self_lines"]]
    out += ["  incl %   function"]
    out += [f"  {p:6.1f}   {f}" for f, p in s["inclusive"]]
    return "\n".join(out)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(format_summary(Path(p).stem, summarise(p)))
