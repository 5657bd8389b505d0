#!/usr/bin/env bash
# What the test suite needs from the system, on Debian as root: PostgreSQL server binaries (the
# tests start their own throwaway clusters), the Docker engine, debootstrap for a local base image,
# Debian's registry and GNU time. Idempotent; a no-op when everything is there.
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-registry >/dev/null || need+=(docker-registry)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "error: missing system packages: ${need[*]} (install them, or run as root on Debian)" >&2
        exit 2
    fi
    echo "installing system packages: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi
# Debian's package starts a cluster of its own; the tests do not use it.
if [ -x scripts/docker-engine.sh ]; then scripts/docker-engine.sh; fi
