#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`.
# - With a working Docker setup (Docker Desktop, a systemd service, a remote DOCKER_HOST): nothing to do.
# - On a fresh Debian machine as root (CI): install Debian's docker.io (+ debootstrap for the local
#   base image, docker-registry for the push test, docker-compose to validate compose/) when missing,
#   then start dockerd in the background (log: /var/log/dockerd.log) and wait for it.
# Idempotent; never stops anything. Only the engine is mandatory: the other tools serve single targets.
set -euo pipefail

log() { echo "docker-engine: $*" >&2; }

engine_up() { docker info >/dev/null 2>&1; }
need=()
engine_up || command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing ${need[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi

if engine_up; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
    log "no Docker engine answers: start Docker (or set DOCKER_HOST) first"
    exit 1
fi
if ! pgrep -x dockerd >/dev/null; then
    log "starting dockerd"
    # setsid: the engine outlives this script and the make/pytest run that called it
    setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
fi
for _ in $(seq 1 120); do
    if engine_up; then
        log "engine ready ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
        exit 0
    fi
    sleep 0.5
done
log "dockerd did not answer within 60 s; see /var/log/dockerd.log"
tail -20 /var/log/dockerd.log >&2 || true
exit 1
