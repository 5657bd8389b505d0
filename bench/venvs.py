"""The contenders' own virtual environments under bench/.venvs/ (the product never imports them).

Each venv is rebuilt only when its requirements file (or the Python) changes: a stamp file in
the venv records a hash of both.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"


def _stamp(req_files: list[Path]) -> str:
    h = hashlib.sha256(sys.version.encode())
    for f in req_files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _pip(venv: Path, args: list[str], log) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", *args],
                          stdout=log, stderr=subprocess.STDOUT)


def ensure(name: str, log_dir: Path) -> dict:
    """Create or reuse bench/.venvs/<name> from requirements-<name>.txt (+ -optional.txt)."""
    req = BENCH / f"requirements-{name}.txt"
    opt = BENCH / f"requirements-{name}-optional.txt"
    req_files = [req] + ([opt] if opt.exists() else [])
    venv = VENVS / name
    stamp_file = venv / ".bench-stamp"
    want = _stamp(req_files)
    if stamp_file.exists() and stamp_file.read_text().splitlines()[0] == want:
        return {"python": str(venv / "bin" / "python"), "created": False, "seconds": 0.0,
                "optional_missing": stamp_file.read_text().splitlines()[1:]}
    t0 = time.monotonic()
    shutil.rmtree(venv, ignore_errors=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"venv-{name}.log", "w") as log:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=log, stderr=log)
        if _pip(venv, ["-r", str(req)], log).returncode != 0:
            raise RuntimeError(f"pip install -r {req} failed: see {log_dir / f'venv-{name}.log'}")
        missing = []
        if opt.exists():
            for line in opt.read_text().splitlines():
                pkg = line.split("#", 1)[0].strip()
                if pkg and _pip(venv, [pkg], log).returncode != 0:
                    missing.append(pkg)
    stamp_file.write_text("\n".join([want, *missing]) + "\n")
    return {"python": str(venv / "bin" / "python"), "created": True,
            "seconds": round(time.monotonic() - t0, 1), "optional_missing": missing}
