"""A real Prometheus scrapes a real edge, and the queries of docs/compose.md answer.

The edge proxies to a real appserver over uwsgi and serves ``/metrics`` on a
second listener; the host's ``prometheus`` (tests/support/prometheus.py)
scrapes it every second.  What the test sends is what the queries must show:
N requests are exactly N more in ``edge_http_requests_total``, the error rate
is the share of 500s sent, and the p99 of the request-duration histogram falls
in the bucket of the slow requests sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import WSGI_APP
from tests.support.edge import EdgeProcess, request, start_edge, write_config
from tests.support.processes import ServerProcess
from tests.support.prometheus import PrometheusProcess, Sample, start_prometheus

CONFIG = """
worker_processes: 2
error_log: {{level: warn}}
access_log: off
upstreams:
  app: {{servers: ["{uwsgi}"], resolve: off}}
servers:
  - listen: 127.0.0.1:0
    locations:
      - path: /
        proxy: app
        protocol: uwsgi
  - listen: 127.0.0.2:0
    locations:
      - path: = /metrics
        metrics: prometheus
        access: [allow 127.0.0.0/8, deny all]
"""

# The queries of docs/compose.md ("The monitoring profile"), with the windows
# shortened to fit a test: every scrape of the run is inside them.
ERROR_RATE = (
    'sum by (server) (rate(edge_http_requests_total{status="5xx"}[1m]))'
    " / sum by (server) (rate(edge_http_requests_total[1m]))"
)
P99 = (
    "histogram_quantile(0.99, sum by (le) "
    '(rate(edge_http_request_duration_seconds_bucket{upstream="app"}[1m])))'
)

FAST, FAILING, SLOW = 20, 5, 5
SLOW_SECONDS = 0.3  # edge's buckets (edge/metrics.py): 0.25 < 0.3 <= 0.5


@pytest.fixture
def edge(tmp_path: Path, start_appserver: Callable[..., ServerProcess]) -> Iterator[EdgeProcess]:
    app = start_appserver("--socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--threads", "4")
    app.wait_ready(1)
    host, port = app.address("uwsgi")
    config = write_config(tmp_path, CONFIG.format(uwsgi=f"{host}:{port}"))
    process = start_edge(["-c", str(config)], cwd=tmp_path, log_path=tmp_path / "edge.log")
    try:
        process.ready(2)
        yield process
    finally:
        process.stop()


@pytest.fixture
def prometheus(tmp_path: Path, edge: EdgeProcess) -> Iterator[PrometheusProcess]:
    _site, metrics = edge.addresses(2)
    with start_prometheus(tmp_path / "prometheus", {"edge": [f"{metrics[0]}:{metrics[1]}"]}) as p:
        yield p


def _total(samples: list[Sample]) -> float:
    return sum(sample.value for sample in samples)


def test_prometheus_sees_every_request_and_the_queries_answer(
    edge: EdgeProcess, prometheus: PrometheusProcess
) -> None:
    site, metrics = edge.addresses(2)
    up = prometheus.wait_for(
        'up{job="edge"}', lambda s: len(s) == 1 and s[0].value == 1, what="edge scraped"
    )
    assert up[0].labels["instance"] == f"{metrics[0]}:{metrics[1]}"
    # The site's server block only: the scrapes are requests to the metrics one.
    server = f'job="edge", server="{site[0]}:0"'
    ok = f'edge_http_requests_total{{{server}, status="2xx"}}'
    failed = f'edge_http_requests_total{{{server}, status="5xx"}}'
    before_ok = _total(prometheus.query(ok))
    before_failed = _total(prometheus.query(failed))

    for _ in range(FAST):
        assert request(site, target="/pid").status == 200
    for _ in range(FAILING):
        assert request(site, target="/boom").status == 500
    for _ in range(SLOW):
        assert request(site, target=f"/slow?{SLOW_SECONDS}").status == 200

    # Exactly what was sent, once a scrape after the last request has landed.
    samples = prometheus.wait_for(
        ok, lambda s: _total(s) >= before_ok + FAST + SLOW, what=f"{FAST + SLOW} more 2xx"
    )
    assert _total(samples) == before_ok + FAST + SLOW, samples
    assert _total(prometheus.query(failed)) == before_failed + FAILING
    # One series per (server, location, status class), labelled as docs/monitoring.md says.
    series = prometheus.query('edge_http_requests_total{job="edge"}')
    assert {s.labels["status"] for s in series} == {"1xx", "2xx", "3xx", "4xx", "5xx"}
    assert {s.labels["server"] for s in series} >= {f"{site[0]}:0", f"{metrics[0]}:0"}
    proxied = [s for s in series if s.labels["server"] == f"{site[0]}:0"]
    # location="" (no location matched) has no label at all in Prometheus: empty is absent.
    assert {s.labels.get("location", "") for s in proxied} == {"", "/"}, proxied

    # The error rate per server block: the share of 500s among what the site
    # answered; the metrics server (the scrapes themselves) has none.
    sent = FAST + FAILING + SLOW
    rates = {s.labels["server"]: s.value for s in prometheus.query(ERROR_RATE)}
    assert rates[f"{site[0]}:0"] == pytest.approx(FAILING / sent, abs=0.02), rates
    assert rates[f"{metrics[0]}:0"] == 0, rates
    # p99 of the proxied requests: in the slow requests' bucket.
    p99 = prometheus.value(P99)
    assert p99 is not None and 0.25 < p99 <= 0.5, p99
