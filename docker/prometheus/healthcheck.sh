#!/bin/bash
# The image's health check: GET /-/ready from the Prometheus in this container.
# Plain bash (/dev/tcp), because the image has neither curl nor wget, and
# promtool 2.42 has no readiness probe.  /-/ready answers 200 once the TSDB is
# open and the configuration loaded, 503 before.
#
# Usage: prometheus-healthcheck   (PROMETHEUS_HEALTHCHECK_PORT, default 9090)
set -u
port=${PROMETHEUS_HEALTHCHECK_PORT:-9090}
if ! { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
    echo "prometheus-healthcheck: nothing listens on 127.0.0.1:$port"
    exit 1
fi
printf 'GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$port" >&3
if ! IFS= read -r -t 4 status <&3; then
    echo "prometheus-healthcheck: no answer to GET /-/ready within 4 s"
    exit 1
fi
status=${status%$'\r'}
case $status in
    "HTTP/1."?" 200"*) exit 0 ;;
esac
echo "prometheus-healthcheck: GET /-/ready: $status"
exit 1
