#!/bin/sh
# wsgistack container entrypoint: the first argument picks the role.
#
#   edge [ARGS...]        the HTTP edge server            (health: tcp 8080)
#   appserver [ARGS...]   the uWSGI-compatible app server  (health: tcp 3031)
#   gunicorn [ARGS...]    gunicorn; with no ARGS it serves $WSGI_APP on
#                         0.0.0.0:8000                     (health: tcp 8000)
#   manage [ARGS...]      Django's manage.py
#   healthcheck           probe this container (what HEALTHCHECK runs)
#   help                  this text
#   anything else         run as a command (sh, python, ...)
#
# The image's HEALTHCHECK probes the role's default port.  Set HEALTHCHECK_URL
# when a role listens elsewhere: tcp://HOST:PORT (connect), unix:/PATH (connect),
# http(s)://... (GET, healthy below status 400), or "none" to always pass.
#
# When this script is PID 1 and tini is installed (the air-gapped base has it),
# it re-executes itself under tini, which reaps zombies and forwards signals to
# the server, so `docker stop` stops it.  Elsewhere use `docker run --init`
# (compose: `init: true`).  WSGISTACK_NO_TINI=1 turns this off.
set -eu

STATE_FILE=${WSGISTACK_STATE_FILE:-/tmp/wsgistack-role}

usage() {
    sed -n '2,20s/^# \{0,1\}//p' "$0"
}

# Record the role so that `healthcheck`, run later by `docker exec`, knows which
# port to probe.  A read-only /tmp only costs the default: it is not fatal.
remember_role() {
    printf '%s\n' "$1" >"$STATE_FILE" 2>/dev/null || true
}

find_manage_py() {
    for candidate in /app/manage.py /app/sampleapp/manage.py; do
        if [ -f "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

healthcheck() {
    url=${HEALTHCHECK_URL:-}
    if [ -z "$url" ]; then
        role=$(cat "$STATE_FILE" 2>/dev/null || true)
        case $role in
            edge) url=tcp://127.0.0.1:8080 ;;
            appserver) url=tcp://127.0.0.1:3031 ;;
            gunicorn) url=tcp://127.0.0.1:8000 ;;
            *) url=none ;;
        esac
    fi
    [ "$url" = none ] && exit 0
    exec python - "$url" <<'EOF'
import os
import socket
import sys
import urllib.error
import urllib.request

url = sys.argv[1]
timeout = float(os.environ.get("HEALTHCHECK_TIMEOUT", "3"))
try:
    if url.startswith("tcp://"):
        host, _, port = url[len("tcp://"):].rstrip("/").rpartition(":")
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout).close()
    elif url.startswith("unix:"):
        path = url[len("unix:"):]
        path = path[2:] if path.startswith("//") else path
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
    elif url.startswith(("http://", "https://")):
        # No proxies: an http_proxy in the environment must not intercept a local probe.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=timeout) as response:
            status = response.status
    else:
        print(f"healthcheck: unsupported HEALTHCHECK_URL {url!r}: "
              "use tcp://HOST:PORT, unix:/PATH, http(s)://... or none")
        sys.exit(1)
except urllib.error.HTTPError as exc:
    print(f"healthcheck: {url}: HTTP {exc.code}")
    sys.exit(1)
except (OSError, ValueError) as exc:
    print(f"healthcheck: {url}: {exc}")
    sys.exit(1)
print(f"healthcheck: {url}: ok")
EOF
}

if [ $# -eq 0 ]; then
    set -- help
fi

case $1 in
    healthcheck) healthcheck ;;
    help | -h | --help) usage; exit 0 ;;
esac

if [ "$$" = 1 ] && [ "${WSGISTACK_NO_TINI:-0}" != 1 ] && command -v tini >/dev/null 2>&1; then
    exec tini -- "$0" "$@"
fi

role=$1
shift
case $role in
    edge | appserver)
        remember_role "$role"
        exec "$role" "$@"
        ;;
    gunicorn)
        remember_role gunicorn
        if [ $# -eq 0 ]; then
            set -- --bind 0.0.0.0:8000 "${WSGI_APP:-sampleapp.wsgi:application}"
        fi
        exec gunicorn "$@"
        ;;
    manage)
        remember_role manage
        if manage_py=$(find_manage_py); then
            exec python "$manage_py" "$@"
        fi
        exec python -m django "$@"
        ;;
    *)
        remember_role command
        exec "$role" "$@"
        ;;
esac
