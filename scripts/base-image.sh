#!/usr/bin/env bash
# Build the local base images for an engine that cannot pull (CI, air-gapped hosts), with
# debootstrap and `docker import`:
#   local/python-base:bookworm        Debian 12 minbase + python3 (3.11), python3-venv, ca-certificates
#   local/python-base:bookworm-pg15   the same + postgresql-client-15 (pg_dump/pg_restore: backup image)
# They stand in for the official python:3.11-slim-bookworm image (`make build BASE_IMAGE=...`).
# Idempotent: an image that `docker image inspect` finds is kept (delete it to rebuild).
# Needs root, debootstrap (installed from Debian when missing) and a running engine.
#
# usage: scripts/base-image.sh [IMAGE [PG_IMAGE]]
set -euo pipefail

IMAGE=${1:-local/python-base:bookworm}
PG_IMAGE=${2:-local/python-base:bookworm-pg15}
SUITE=${BASE_SUITE:-bookworm}
MIRROR=${BASE_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,ca-certificates
PG_PACKAGES="postgresql-client-15"

log() { echo "base-image: $*" >&2; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

if have "$IMAGE" && have "$PG_IMAGE"; then
    log "$IMAGE and $PG_IMAGE already present"
    exit 0
fi
[ "$(id -u)" = 0 ] || { log "debootstrap needs root; or pass BASE_IMAGE=<an image you can pull>"; exit 1; }
if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap >/dev/null
fi

work=$(mktemp -d /var/tmp/biometrics-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

# Keep documentation, man pages and translations out of this and any later package install,
# as the official slim images do.
slim() {
    local root=$1
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-slim" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/*
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
        "$root"/var/log/* "$root"/tmp/* "$root"/root/.cache
    : >"$root/etc/resolv.conf"   # the engine provides one at run time; keep the host's out
    echo localhost >"$root/etc/hostname"
}

import() {
    local root=$1 tag=$2 description=$3
    log "importing $tag"
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL org.opencontainers.image.description=\"$description\"" \
        --change 'CMD ["python3"]' \
        - "$tag" >/dev/null
}

start=$(date +%s)
log "debootstrap $SUITE (minbase + $PACKAGES) from $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"    # name resolution for the chroot's apt below
slim "$rootfs"
have "$IMAGE" || import "$rootfs" "$IMAGE" "Debian $SUITE minbase with Python 3 (local stand-in for python:3.11-slim-bookworm)"

if ! have "$PG_IMAGE"; then
    log "adding $PG_PACKAGES for $PG_IMAGE"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    chroot "$rootfs" /bin/sh -c "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq \
        && apt-get install -y -qq --no-install-recommends $PG_PACKAGES >/dev/null 2>&1 \
        && pg_dump --version" >&2
    slim "$rootfs"
    import "$rootfs" "$PG_IMAGE" "Debian $SUITE minbase with Python 3 and $PG_PACKAGES"
fi
log "done in $(( $(date +%s) - start ))s"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -F -e "$IMAGE" -e "$PG_IMAGE" >&2 || true
