#!/usr/bin/env bash
# Create the project's virtual environment, installing Debian's venv module first if it is missing.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: $python must be Python 3.11 or newer" >&2; exit 2
fi
if "$python" -m venv "$venv" 2>/dev/null; then exit 0; fi
rm -rf "$venv"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "python venv module missing: installing python3-venv" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    exec "$python" -m venv "$venv"
fi
echo "error: '$python -m venv' failed: install the venv module (Debian: sudo apt-get install python3-venv)" >&2
exit 2
