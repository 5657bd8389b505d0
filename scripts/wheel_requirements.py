#!/usr/bin/env python3
"""Write each stage image's third-party requirement list from our wheels' metadata.

usage: wheel_requirements.py LOCAL_WHEEL_DIR OUT_DIR STAGE...

For every stage, ``OUT_DIR/<stage>.txt`` lists the ``Requires-Dist`` entries of
``biometrics-<stage>`` and, transitively, of the ``biometrics-*`` packages it depends on (the core),
evaluated for the images' platform (CPython 3.11, Linux x86_64, no extras). ``OUT_DIR/all.txt`` is
the union, which the wheelhouse downloads once. Our own packages are never looked up on an index:
they come from LOCAL_WHEEL_DIR only.
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip always vendors packaging
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]

OURS = "biometrics-"
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "implementation_version": "3.11.2",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "sys_platform": "linux",
    "os_name": "posix",
    "extra": "",
}


def read_metadata(wheel: Path) -> tuple[str, list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(zf.read(name).decode("utf-8"))
    return canonicalize_name(msg["Name"]), msg.get_all("Requires-Dist") or []


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    local, out, stages = Path(argv[0]), Path(argv[1]), argv[2:]
    requires: dict[str, list[Requirement]] = {}
    for wheel in sorted(local.glob("*.whl")):
        name, reqs = read_metadata(wheel)
        requires[name] = [Requirement(r) for r in reqs]

    def third_party(dist: str, seen: set[str]) -> set[str]:
        if dist in seen:
            return set()
        seen.add(dist)
        if dist not in requires:
            raise SystemExit(f"wheel_requirements: no wheel of {dist} in {local}")
        found: set[str] = set()
        for req in requires[dist]:
            if req.marker is not None and not req.marker.evaluate(TARGET):
                continue
            name = canonicalize_name(req.name)
            if name.startswith(OURS):
                found |= third_party(name, seen)
            else:
                req.marker = None
                found.add(str(req))
        return found

    out.mkdir(parents=True, exist_ok=True)
    union: set[str] = set()
    for stage in stages:
        reqs = sorted(third_party(f"{OURS}{stage}", set()), key=str.lower)
        union.update(reqs)
        (out / f"{stage}.txt").write_text("".join(r + "\n" for r in reqs))
    (out / "all.txt").write_text("".join(r + "\n" for r in sorted(union, key=str.lower)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
