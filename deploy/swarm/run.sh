#!/bin/sh
# The command wrapper of the Swarm stack's Django services (deploy/stack.yaml
# delivers it as the config `run_sh` at /etc/wsgistack/run.sh, mode 0555).
#
#   run.sh [--wait-for-database] [--wait-for-migrations] [--collectstatic] ROLE [ARGS...]
#
# Then it runs /docker/entrypoint.sh ROLE ARGS (the image's roles: appserver,
# edge, manage, ...), as the server itself (exec): signals reach it directly.
#
# - DJANGO_SECRET_KEY_FILE: Swarm hands secrets over as files under
#   /run/secrets/; the settings read the key from DJANGO_SECRET_KEY, so this
#   exports it from the file, in this process only (never in the service spec,
#   so `docker service inspect` does not show it).  The database password needs
#   no help: the settings read DATABASE_PASSWORD_FILE themselves.
# - --wait-for-database: until Django can connect (PostgreSQL may be starting).
# - --wait-for-migrations: until `manage migrate --check` says the schema is
#   current.  The `migrate` job is the only one that migrates; a replica that
#   starts before it has finished waits instead of serving a half-made schema.
# - --collectstatic: `manage collectstatic` into STATIC_ROOT, and NAME.gz next
#   to each text file for gzip_static, in this container (the edge's /static/).
#
# The waits are bounded (WAIT_SECONDS, default 300): a task that cannot get
# there exits 1, and Swarm's restart policy starts it again.
set -eu

log() { printf 'run.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The image's entrypoint; the unit tests put a stand-in here.
ENTRYPOINT=${WSGISTACK_ENTRYPOINT:-/docker/entrypoint.sh}
WAIT_SECONDS=${WAIT_SECONDS:-300}

if [ -n "${DJANGO_SECRET_KEY_FILE:-}" ]; then
    [ -r "$DJANGO_SECRET_KEY_FILE" ] || die "DJANGO_SECRET_KEY_FILE: cannot read $DJANGO_SECRET_KEY_FILE"
    DJANGO_SECRET_KEY=$(head -n 1 "$DJANGO_SECRET_KEY_FILE")
    [ -n "$DJANGO_SECRET_KEY" ] || die "DJANGO_SECRET_KEY_FILE: $DJANGO_SECRET_KEY_FILE is empty"
    export DJANGO_SECRET_KEY
    unset DJANGO_SECRET_KEY_FILE
fi

# Run "$@" until it succeeds, every 2 s, for at most WAIT_SECONDS; then once
# more with its output shown, so the log says why.
wait_until() {
    what=$1
    shift
    deadline=$(($(date +%s) + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "still no $what after ${WAIT_SECONDS}s; the last attempt:"
            "$@" || true
            exit 1
        fi
        sleep 2
    done
    log "$what: ok"
}

while [ $# -gt 0 ]; do
    case $1 in
        --wait-for-database)
            wait_until "database connection" "$ENTRYPOINT" manage shell -c \
                'from django.db import connection; connection.ensure_connection()'
            ;;
        --wait-for-migrations)
            wait_until "migrated schema" "$ENTRYPOINT" manage migrate --check
            ;;
        --collectstatic)
            # collectstatic reads no secret and opens no database; a key of its
            # own keeps the settings from warning about a missing one.
            DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-collectstatic-reads-no-secret} \
                "$ENTRYPOINT" manage collectstatic --noinput --verbosity 0
            find "${STATIC_ROOT:?STATIC_ROOT is not set}" -type f \( -name '*.css' -o -name '*.js' \
                -o -name '*.svg' -o -name '*.txt' -o -name '*.html' -o -name '*.json' \) \
                -exec gzip -k -f -9 {} +
            log "static files collected into $STATIC_ROOT"
            ;;
        --*) die "unknown option $1" ;;
        *) break ;;
    esac
    shift
done
[ $# -gt 0 ] || die "usage: run.sh [--wait-for-database] [--wait-for-migrations] [--collectstatic] ROLE [ARGS...]"
exec "$ENTRYPOINT" "$@"
