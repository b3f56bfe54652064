#!/bin/sh
# wsgistack container entrypoint: the first argument picks the role.
#
#   edge [ARGS...]        the HTTP edge server            (health: tcp 8080)
#   appserver [ARGS...]   the uWSGI-compatible app server  (health: tcp 3031)
#   gunicorn [ARGS...]    gunicorn; with no ARGS it serves $WSGI_APP on
#                         0.0.0.0:8000                     (health: tcp 8000)
#   manage [ARGS...]      Django's manage.py
#   dev-cert DIR          make a development CA and a certificate it signs in DIR
#                         (dev-ca.crt, edge.crt, edge.key), unless DIR has one
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
#
# TLS for the edge role: with EDGE_TLS_DIR set (compose sets /srv/tls), the edge
# finds its certificate there as edge.crt and edge.key.  A pair mounted at
# /etc/wsgistack/tls/ (compose mounts ./deploy) is linked in, so a renewal there is
# picked up by SIGHUP; without one, a development certificate is made at the first
# start and kept in the volume.
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

# A development CA (its key never leaves DIR) and a certificate it signs for
# localhost, 127.0.0.1, ::1 and the service name "edge".  Browsers and curl trust
# the certificate once they trust dev-ca.crt; nothing else does.
dev_cert() {
    dir=$1
    if [ -s "$dir/edge.crt" ] && [ -s "$dir/edge.key" ]; then
        return 0
    fi
    command -v openssl >/dev/null 2>&1 || { echo "dev-cert: openssl is not installed" >&2; return 1; }
    mkdir -p "$dir"
    rm -f "$dir/edge.crt" "$dir/edge.key"
    old_umask=$(umask)
    umask 077
    if [ ! -s "$dir/dev-ca.crt" ] || [ ! -s "$dir/dev-ca.key" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/O=wsgistack development/CN=wsgistack development CA" \
            -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout "$dir/dev-ca.key" -out "$dir/dev-ca.crt" 2>/dev/null
    fi
    printf '%s\n' \
        "subjectAltName=DNS:localhost,DNS:edge,IP:127.0.0.1,IP:::1" \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" >"$dir/edge.ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/O=wsgistack development/CN=localhost" \
        -keyout "$dir/edge.key" -out "$dir/edge.csr" 2>/dev/null
    # 397 days: the longest validity browsers accept for a server certificate.
    openssl x509 -req -in "$dir/edge.csr" -CA "$dir/dev-ca.crt" -CAkey "$dir/dev-ca.key" \
        -CAcreateserial -days 397 -extfile "$dir/edge.ext" -out "$dir/edge.crt" 2>/dev/null
    rm -f "$dir/edge.csr" "$dir/edge.ext" "$dir/dev-ca.srl"
    chmod 0644 "$dir/dev-ca.crt" "$dir/edge.crt"
    umask "$old_umask"
    echo "dev-cert: made a development certificate in $dir (trust $dir/dev-ca.crt to use it)" >&2
}

# The edge's certificate in $EDGE_TLS_DIR: the mounted pair, or a development one.
edge_tls() {
    dir=${EDGE_TLS_DIR:-}
    [ -n "$dir" ] || return 0
    mounted=${EDGE_TLS_MOUNTED:-/etc/wsgistack/tls}
    mkdir -p "$dir"
    if [ -f "$mounted/edge.crt" ] && [ -f "$mounted/edge.key" ]; then
        ln -sf "$mounted/edge.crt" "$dir/edge.crt"
        ln -sf "$mounted/edge.key" "$dir/edge.key"
    else
        for name in edge.crt edge.key; do
            # A link to a pair that is no longer mounted: make a development one instead.
            if [ -L "$dir/$name" ]; then rm -f "$dir/$name"; fi
        done
        dev_cert "$dir"
    fi
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
    dev-cert)
        [ $# -eq 2 ] || { echo "usage: $0 dev-cert DIR" >&2; exit 2; }
        dev_cert "$2"
        exit 0
        ;;
    help | -h | --help) usage; exit 0 ;;
esac

if [ "$$" = 1 ] && [ "${WSGISTACK_NO_TINI:-0}" != 1 ] && command -v tini >/dev/null 2>&1; then
    exec tini -- "$0" "$@"
fi

role=$1
shift
case $role in
    edge)
        remember_role edge
        edge_tls
        exec edge "$@"
        ;;
    appserver)
        remember_role appserver
        exec appserver "$@"
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
