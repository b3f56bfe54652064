#!/bin/sh
# Run Docker Compose, whichever form this machine has: the `docker compose`
# plugin (v2) or the standalone `docker-compose` (v1).  COMPOSE overrides the
# choice, e.g. COMPOSE=docker-compose scripts/compose.sh up -d
#
# Usage: scripts/compose.sh ARGS...   (run from anywhere; uses the repo root)
set -eu

cd "$(dirname "$0")/.."

if [ -n "${COMPOSE:-}" ]; then
    # Word splitting is wanted here: COMPOSE may be "docker compose".
    # shellcheck disable=SC2086
    exec $COMPOSE "$@"
fi
if docker compose version >/dev/null 2>&1; then
    exec docker compose "$@"
fi
if command -v docker-compose >/dev/null 2>&1; then
    exec docker-compose "$@"
fi
echo "compose.sh: neither 'docker compose' nor 'docker-compose' is installed" >&2
exit 127
