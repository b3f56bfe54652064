#!/usr/bin/env bash
# Build a Debian bookworm base image without pulling anything from a registry.
#
# Theory of operation: debootstrap a minbase root filesystem from the mirror that
# the host's apt already uses (read at run time with `apt-get indextargets`, so no
# mirror name is ever written into this repository), add the -updates and
# -security suites the host has configured, dist-upgrade, strip what a runtime
# image never reads, then `docker import` the tree.  The result stands in for
# python:3.11-slim on machines whose Docker engine cannot reach a registry.
#
# Usage: scripts/build-base-image.sh            (skips if the image exists)
#        FORCE=1 scripts/build-base-image.sh    (rebuilds it)
# Environment:
#   BASE_IMAGE        image name to produce       (default wsgistack/base:bookworm)
#   SUITE             Debian suite                (default bookworm)
#   MIRROR            override the main mirror URI (default: the host's)
#   UPDATES_MIRROR    override the -updates URI    (default: the host's, else MIRROR)
#   SECURITY_MIRROR   override the -security URI   (default: the host's; "none" to skip)
#   EXTRA_PACKAGES    comma-separated packages to add to the base
#   WORKDIR           where to build the rootfs    (default: a temp dir under /var/tmp)
#   KEEP_ROOTFS=1     keep the rootfs afterwards (for inspection)
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:-wsgistack/base:bookworm}
SUITE=${SUITE:-bookworm}
FORCE=${FORCE:-0}
PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,tini${EXTRA_PACKAGES:+,$EXTRA_PACKAGES}"

log() { printf 'build-base-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

report_size() {
    local bytes
    bytes=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
    log "$BASE_IMAGE is $((bytes / 1000000)) MB ($bytes bytes)"
}

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "cannot talk to the Docker engine (is it running? are you in the docker group?)"

if [ "$FORCE" != 1 ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE already exists; skipping (FORCE=1 rebuilds it)"
    report_size
    exit 0
fi

[ "$(id -u)" = 0 ] || die "debootstrap needs root: run as root (or with sudo)"

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap with apt-get"
    apt-get install -y --no-install-recommends debootstrap >/dev/null 2>&1 \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends debootstrap >/dev/null; } \
        || die "could not install debootstrap; install it and re-run"
fi

# The URI apt really uses for a suite, for one-line and deb822 sources alike.
host_mirror_for() {
    # shellcheck disable=SC2016 # $(RELEASE) is apt's placeholder, not the shell's
    apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 'Created-By: Packages' 2>/dev/null \
        | awk -v r="$1" '$1 == r { print $2; exit }'
}

MIRROR=${MIRROR:-$(host_mirror_for "$SUITE")}
[ -n "$MIRROR" ] || die "the host's apt has no '$SUITE' source; set MIRROR=<debian mirror URI>"
UPDATES_MIRROR=${UPDATES_MIRROR:-$(host_mirror_for "$SUITE-updates")}
UPDATES_MIRROR=${UPDATES_MIRROR:-$MIRROR}
SECURITY_MIRROR=${SECURITY_MIRROR:-$(host_mirror_for "$SUITE-security")}
if [ -z "$SECURITY_MIRROR" ]; then
    log "warning: the host's apt has no '$SUITE-security' source; the image will miss security updates"
    SECURITY_MIRROR=none
fi

WORKDIR=${WORKDIR:-$(mktemp -d /var/tmp/wsgistack-rootfs.XXXXXX)}
ROOTFS=$WORKDIR/rootfs
mkdir -p "$ROOTFS"

cleanup() {
    local status=$?
    umount "$ROOTFS/proc" 2>/dev/null || true
    if [ "${KEEP_ROOTFS:-0}" = 1 ]; then
        log "rootfs kept at $ROOTFS"
    else
        rm -rf --one-file-system "$WORKDIR"
    fi
    exit "$status"
}
trap cleanup EXIT

start=$(date +%s)
log "debootstrap $SUITE (minbase) into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$WORKDIR/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORKDIR/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

# Keep documentation and translations out of every package installed from now on,
# including by images built FROM this one (copyright files stay, for the licences).
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-wsgistack-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/01-wsgistack-minimal" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF

# debootstrap only knows the main suite: add -updates and -security as the host has them.
{
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE"
    printf 'deb %s %s-updates main\n' "$UPDATES_MIRROR" "$SUITE"
    [ "$SECURITY_MIRROR" = none ] || printf 'deb %s %s-security main\n' "$SECURITY_MIRROR" "$SUITE"
} >"$ROOTFS/etc/apt/sources.list"

log "apt-get dist-upgrade from $SUITE-updates and $SUITE-security"
mount -t proc proc "$ROOTFS/proc"
in_root() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }
if ! { in_root apt-get -q update \
        && in_root apt-get -q -y -o Dpkg::Options::=--force-confdef \
            -o Dpkg::Options::=--force-confold dist-upgrade; } >"$WORKDIR/upgrade.log" 2>&1; then
    tail -n 30 "$WORKDIR/upgrade.log" >&2
    die "apt-get dist-upgrade failed (log above)"
fi
grep -E '^[0-9]+ upgraded' "$WORKDIR/upgrade.log" | sed 's/^/build-base-image: /' >&2 || true
in_root apt-get clean
umount "$ROOTFS/proc"

log "stripping docs, locales, apt lists and host identity"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/lib/dpkg/*-old \
    "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* \
    "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
    "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/lintian/*
find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
# debootstrap copied the host's resolver and name; Docker provides its own at run time.
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"
: >"$ROOTFS/etc/machine-id" 2>/dev/null || true

log "docker import as $BASE_IMAGE"
# Device nodes, /proc and /sys contents never belong in an image: Docker creates them.
tar --numeric-owner --one-file-system -C "$ROOTFS" \
    --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' -cf - . \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --message "wsgistack base: debootstrap $SUITE minbase + $PACKAGES, dist-upgraded $(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        - "$BASE_IMAGE" >/dev/null

log "done in $(($(date +%s) - start)) s"
report_size
