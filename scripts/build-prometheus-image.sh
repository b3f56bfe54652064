#!/usr/bin/env bash
# Build the wsgistack/prometheus image (docker/prometheus/) without a registry.
#
# Theory of operation: the same as scripts/build-postgres-image.sh.  The image
# is Debian's prometheus on the debootstrap base (wsgistack/base:bookworm,
# scripts/build-base-image.sh).  The build itself needs no network: the host's
# apt downloads the .deb files, resolving the dependencies against the *base
# image's* dpkg status file (copied out of the image), so exactly the packages
# the base lacks are fetched.  They go into a staging build context next to
# docker/prometheus/'s files, and the Dockerfile installs them with every apt
# source switched off.
#
# Usage: scripts/build-prometheus-image.sh
# Environment:
#   PROMETHEUS_IMAGE  image to produce        (default wsgistack/prometheus:2)
#   BASE_IMAGE        the base to build on    (default wsgistack/base:bookworm; must exist)
#   WORKDIR           staging directory       (default build/prometheus-image)
#   DOCKER_BUILD_ARGS extra `docker build` arguments
set -euo pipefail

cd "$(dirname "$0")/.."

PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-wsgistack/prometheus:2}
BASE_IMAGE=${BASE_IMAGE:-wsgistack/base:bookworm}
WORKDIR=${WORKDIR:-build/prometheus-image}
PACKAGE=prometheus

log() { printf 'build-prometheus-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
    || die "base image $BASE_IMAGE not found: run \`make base-image\` (scripts/build-base-image.sh)"
command -v apt-get >/dev/null || die "the host needs apt-get to fetch the .deb files (a Debian or Ubuntu host)"

start=$(date +%s)
rm -rf "$WORKDIR"
mkdir -p "$WORKDIR/context/debs/partial" "$WORKDIR/state"
cp docker/prometheus/Dockerfile docker/prometheus/healthcheck.sh docker/prometheus/prometheus.yml \
    "$WORKDIR/context/"

# What the base already has, from its own dpkg database.
container=$(docker create "$BASE_IMAGE" /bin/true)
trap 'docker rm -f "$container" >/dev/null 2>&1 || true' EXIT
docker cp "$container:/var/lib/dpkg/status" "$WORKDIR/state/status"
docker rm -f "$container" >/dev/null
trap - EXIT

# --no-install-recommends: not prometheus-node-exporter (a host agent, not
# something a container of this stack has a use for).
fetch() {
    apt-get install -y -q --download-only --no-install-recommends \
        -o Dir::State::status="$PWD/$WORKDIR/state/status" \
        -o Dir::Cache::archives="$PWD/$WORKDIR/context/debs" \
        -o Debug::NoLocking=1 \
        "$PACKAGE" >"$WORKDIR/apt.log" 2>&1
}
log "downloading $PACKAGE and what $BASE_IMAGE lacks, with the host's apt"
if ! fetch; then
    # Stale package lists are the usual cause: refresh them once.
    log "apt-get failed; running apt-get update and trying again"
    apt-get update -q >>"$WORKDIR/apt.log" 2>&1 || true
    fetch || { tail -n 20 "$WORKDIR/apt.log" >&2; die "apt-get --download-only failed (log above)"; }
fi
rmdir "$WORKDIR/context/debs/partial" 2>/dev/null || true
count=$(find "$WORKDIR/context/debs" -name '*.deb' | wc -l)
[ "$count" -gt 0 ] || die "apt downloaded no .deb files (see $WORKDIR/apt.log)"
log "$count packages, $(du -sm "$WORKDIR/context/debs" | cut -f1) MB"

log "docker build --build-arg BASE_IMAGE=$BASE_IMAGE -t $PROMETHEUS_IMAGE"
# shellcheck disable=SC2086 # DOCKER_BUILD_ARGS is a list of arguments
docker build --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg USE_DEBS=1 \
    ${DOCKER_BUILD_ARGS:-} -t "$PROMETHEUS_IMAGE" "$WORKDIR/context"
rm -rf "$WORKDIR/context/debs"
log "done in $(($(date +%s) - start)) s; $PROMETHEUS_IMAGE is $(($(docker image inspect -f '{{.Size}}' "$PROMETHEUS_IMAGE") / 1000000)) MB"
