#!/usr/bin/env bash
# Build the offline wheelhouse the stage images install from (default: build/wheelhouse/):
#   local/               our wheels: biometrics-core and each stage (pip wheel --no-deps)
#   requirements/S.txt   stage S's third-party requirements, read from the wheels' metadata
#   deps/                every third-party wheel for CPython 3.11 on manylinux x86_64 (pip download)
#   constraints.txt      the versions pinned for deps/: those of the repository venv (.venv), so
#                        the images run what the in-process tests ran
# The images never reach a package index; this script is the only step that does (from the host).
# Idempotent: deps/ is downloaded again only when the requirement lists or the pins change.
#
# usage: scripts/wheelhouse.sh [STAGE...]        (default: extract transform load validate backup)
# env:   WHEELHOUSE_PYTHON (default .venv/bin/python, else python3), WHEELHOUSE (output directory),
#        WHEELHOUSE_CONSTRAINTS (a constraints file to use instead of the venv's versions; "none": no pins)
set -euo pipefail
cd "$(dirname "$0")/.."

STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(extract transform load validate backup)
PYTHON=${WHEELHOUSE_PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
OUT=${WHEELHOUSE:-build/wheelhouse}
# Reproducible wheels (zip timestamps), so an unchanged package keeps Docker's layer cache.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 315532800)}
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { echo "wheelhouse: $*" >&2; }
quiet_pip() {  # pip, minus the noise of find-links/index locations that do not exist on this host
    "$PYTHON" -m pip "$@" 2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2)
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$OUT"

# 1. Our packages, built from a clean copy of each source tree (no build/ or egg-info left behind).
packages=(libs/core)
for stage in "${STAGES[@]}"; do packages+=("services/$stage"); done
for pkg in "${packages[@]}"; do
    [ -f "$pkg/pyproject.toml" ] || { log "missing $pkg/pyproject.toml"; exit 2; }
    mkdir -p "$tmp/src/$pkg"
    tar -C "$pkg" --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache \
        -cf - . | tar -C "$tmp/src/$pkg" -xf -
done
log "building ${#packages[@]} wheels of our packages"
mkdir -p "$tmp/local"
quiet_pip wheel --quiet --no-deps --wheel-dir "$tmp/local" "${packages[@]/#/$tmp/src/}"
rm -rf "$OUT/local"
mv "$tmp/local" "$OUT/local"

# 2. Each stage's third-party requirements.
rm -rf "$OUT/requirements"
"$PYTHON" scripts/wheel_requirements.py "$OUT/local" "$OUT/requirements" "${STAGES[@]}"

# 3. Pins: the repository venv's versions unless told otherwise.
constraints="$tmp/constraints.txt"
case "${WHEELHOUSE_CONSTRAINTS:-}" in
    none) : >"$constraints" ;;
    "") if [ -x .venv/bin/python ]; then
            .venv/bin/python -m pip freeze --exclude-editable 2>/dev/null \
                | grep -E '^[A-Za-z0-9_.-]+==' | grep -v -i -E '^biometrics[-_]' >"$constraints" || true
        else
            : >"$constraints"
        fi ;;
    *) cp "$WHEELHOUSE_CONSTRAINTS" "$constraints" ;;
esac

# 4. Third-party wheels for the images' platform (not the host's): CPython 3.11, glibc <= 2.36.
stamp="$OUT/deps/.inputs"
{ cat "$OUT/requirements/all.txt"; echo "--"; cat "$constraints"; } >"$tmp/inputs"
if [ -f "$stamp" ] && cmp -s "$tmp/inputs" "$stamp"; then
    log "third-party wheels up to date ($(find "$OUT/deps" -name '*.whl' | wc -l) wheels)"
else
    platforms=()
    for minor in $(seq 36 -1 5); do platforms+=(--platform "manylinux_2_${minor}_x86_64"); done
    platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
    log "downloading third-party wheels for $(wc -l <"$OUT/requirements/all.txt") requirements"
    mkdir -p "$tmp/deps"
    quiet_pip download --quiet --only-binary=:all: --implementation cp --python-version 3.11 \
        "${platforms[@]}" --constraint "$constraints" --dest "$tmp/deps" -r "$OUT/requirements/all.txt"
    cp "$tmp/inputs" "$tmp/deps/.inputs"
    rm -rf "$OUT/deps"
    mv "$tmp/deps" "$OUT/deps"
fi
cp "$constraints" "$OUT/constraints.txt"
log "ready: $OUT ($(du -sh "$OUT" | cut -f1))"
