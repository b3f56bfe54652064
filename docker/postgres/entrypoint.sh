#!/bin/sh
# Entry point of the wsgistack/postgres image: make the cluster on first start,
# then run the server in the foreground.  The environment is the official
# postgres image's (see the Dockerfile); docs/deploy.md says what differs.
#
#   docker-entrypoint.sh [postgres] [-c name=value ...]   initialise if needed, then serve
#   docker-entrypoint.sh OTHER ARGS...                    run OTHER (psql, sh, ...)
#
# Runs as the postgres user (uid 999).  On a new, empty $PGDATA it runs initdb
# with the superuser $POSTGRES_USER and its password, lets every TCP client in
# with scram-sha-256 (never trust), creates $POSTGRES_DB, runs the files in
# /docker-entrypoint-initdb.d once, and listens on every interface.
set -eu

log() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# POSTGRES_PASSWORD_FILE (a Docker or Swarm secret) stands for POSTGRES_PASSWORD.
read_password() {
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        [ -z "${POSTGRES_PASSWORD:-}" ] || die "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, not both"
        [ -r "$POSTGRES_PASSWORD_FILE" ] || die "POSTGRES_PASSWORD_FILE: cannot read $POSTGRES_PASSWORD_FILE"
        # The first line, as initdb --pwfile reads it.
        POSTGRES_PASSWORD=$(head -n 1 "$POSTGRES_PASSWORD_FILE")
    fi
    [ -n "${POSTGRES_PASSWORD:-}" ] \
        || die "POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is required to create the cluster: every client logs in with it"
}

init_cluster() {
    read_password
    user=${POSTGRES_USER:-postgres}
    database=${POSTGRES_DB:-$user}
    log "initialising a new cluster in $PGDATA (superuser $user, database $database)"
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >/dev/null
    rm -f "$pwfile"
    trap - EXIT
    # initdb lets TCP clients in from loopback only; other containers need a
    # password too, never trust.
    printf '\nhost all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

    # A server on a private socket only, so no client sees a half-made cluster.
    socket_dir=$(mktemp -d)
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k $socket_dir" -w -t 60 start >/dev/null
    run_psql() { psql -v ON_ERROR_STOP=1 -X -q -h "$socket_dir" -U "$user" "$@"; }
    if [ "$database" != postgres ]; then
        echo 'CREATE DATABASE :"database";' | run_psql -d postgres -v database="$database"
    fi
    for file in /docker-entrypoint-initdb.d/*; do
        [ -f "$file" ] || continue
        case $file in
            *.sql) log "running $file"; run_psql -d "$database" -f "$file" ;;
            *.sh) log "running $file"; PGHOST=$socket_dir PGUSER=$user PGDATABASE=$database sh "$file" ;;
            *) log "ignoring $file (not .sql or .sh)" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >/dev/null
    rmdir "$socket_dir"
    log "cluster ready"
}

# `docker run IMAGE -c shared_buffers=256MB` means the server with those options.
case ${1:-postgres} in
    -*) set -- postgres "$@" ;;
esac
[ $# -gt 0 ] || set -- postgres

if [ "$1" = postgres ]; then
    [ "$(id -u)" != 0 ] || die "run as the postgres user (uid 999), not root: the image's USER is 999"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        mkdir -p "$PGDATA" 2>/dev/null || true
        [ -w "$PGDATA" ] || die "PGDATA $PGDATA is not writable by uid $(id -u): give the volume to 999:999"
        [ -z "$(ls -A "$PGDATA")" ] || die "PGDATA $PGDATA is not empty but holds no cluster (no PG_VERSION): refusing to initialise over it"
        chmod 0700 "$PGDATA"
        init_cluster
    fi
    # The server is the container's main process: its signals are Docker's.
    exec "$@"
fi
exec "$@"
