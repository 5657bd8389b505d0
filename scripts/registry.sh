#!/usr/bin/env bash
# A throwaway Docker registry (Debian's docker-registry, Distribution 2.x) on loopback, no auth.
#   scripts/registry.sh start [PORT] [DIR]   start it (default 127.0.0.1:5000, state in build/registry);
#                                            prints host:port when it answers; a running one is reused
#   scripts/registry.sh stop [DIR]           stop the one started from DIR (by its recorded PID)
# The engine treats 127.0.0.0/8 registries as insecure-allowed, so `docker push 127.0.0.1:PORT/...`
# works without TLS.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "registry: $*" >&2; }
cmd=${1:-start}

case "$cmd" in
start)
    port=${2:-5000}
    dir=$(realpath -m "${3:-build/registry}")
    mkdir -p "$dir/storage"
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        cat "$dir/address"
        exit 0
    fi
    if ! command -v docker-registry >/dev/null; then
        [ "$(id -u)" = 0 ] || { log "docker-registry is not installed"; exit 1; }
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq docker-registry >/dev/null
    fi
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    setsid docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    echo "127.0.0.1:$port" >"$dir/address"
    for _ in $(seq 1 100); do
        if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
            cat "$dir/address"
            exit 0
        fi
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
        sleep 0.2
    done
    log "the registry did not answer on 127.0.0.1:$port"
    cat "$dir/registry.log" >&2
    exit 1
    ;;
stop)
    dir=$(realpath -m "${2:-build/registry}")
    if [ -f "$dir/pid" ]; then
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        rm -f "$dir/pid"
    fi
    ;;
*)
    echo "usage: $0 start [PORT] [DIR] | stop [DIR]" >&2
    exit 2
    ;;
esac
