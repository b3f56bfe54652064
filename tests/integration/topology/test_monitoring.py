"""The `monitoring` profile: a real Prometheus scrapes the stack (issue 11).

The stack fixture runs compose.yaml with the profile on (in local mode: the
host's prometheus on deploy/prometheus.yml, with the replicas listed in a
file instead of DNS).  What a user of docs/compose.md relies on:

* one ``up{job="appserver"}`` series per running replica, also after
  ``--scale``: the targets come from Docker's DNS, looked up every 5 s;
* ``up{job="edge"} == 1``, and N requests through the edge are N more in
  ``edge_http_requests_total`` (and in the duration histogram's count);
* every replica answers its scrape (``metrics-http = :9192``, deploy/appserver.ini);
* the documented queries run and return data (they are the ones in docs/compose.md).
"""

from __future__ import annotations

import re
import time

import pytest

from tests.support.processes import REPO
from tests.support.prometheus import PrometheusAPI, Sample
from tests.support.topology import DJANGO, Topology, fetch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

# A target appears within dns_sd refresh (5 s) + one scrape (5 s); slack for a busy host.
DISCOVERY_BOUND = 45.0
SCRAPE_BOUND = 30.0  # a scrape after the requests has landed (scrape_interval: 5s)
REQUESTS = 25
HELLO = "/hello"


def _series(samples: list[Sample]) -> list[str]:
    return sorted(sample.labels.get("instance", "?") for sample in samples)


def _wait_for_replicas(prometheus: PrometheusAPI, count: int, *, up: bool = False) -> list[Sample]:
    """Until there are ``count`` appserver targets (and, with ``up``, each scraped fine)."""

    def found(samples: list[Sample]) -> bool:
        distinct = len(samples) == count and len(set(_series(samples))) == count
        return distinct and (not up or all(sample.value == 1 for sample in samples))

    return prometheus.wait_for(
        'up{job="appserver"}',
        found,
        timeout=DISCOVERY_BOUND,
        what=f'{count} up{{job="appserver"}} series' + (", all 1" if up else ""),
    )


def test_one_up_series_per_replica_and_edge_is_up(stack: Topology) -> None:
    prometheus = stack.prometheus()
    replicas = stack.appserver_replicas()
    assert len(replicas) == 2, replicas
    _wait_for_replicas(prometheus, len(replicas), up=True)
    edge = prometheus.wait_for(
        'up{job="edge"}',
        lambda samples: len(samples) == 1 and samples[0].value == 1,
        timeout=DISCOVERY_BOUND,
        what='up{job="edge"} == 1',
    )
    assert edge[0].labels["instance"].endswith(":9145") or stack.mode == "local", edge
    # Each target has its own offset in the scrape interval: wait for this one's first too.
    prometheus.wait_for(
        'up{job="prometheus"}',
        lambda samples: len(samples) == 1 and samples[0].value == 1,
        timeout=DISCOVERY_BOUND,
        what='up{job="prometheus"} == 1',
    )


def test_requests_through_edge_show_in_its_counters(stack: Topology) -> None:
    prometheus = stack.prometheus()
    server = stack.edge_server_label(DJANGO)
    ok = f'sum(edge_http_requests_total{{job="edge", server="{server}", status="2xx"}})'
    timed = 'sum(edge_http_request_duration_seconds_count{job="edge", upstream="appserver"})'
    # Both replicas' counters (the health checks of compose.yaml add to them too).
    served = 'sum(appserver_requests_total{job="appserver"})'
    prometheus.wait_for(ok, lambda samples: len(samples) == 1, timeout=SCRAPE_BOUND, what=ok)
    # The figures before must come from scrapes taken after the earlier tests' traffic:
    # the last scrape may be up to one scrape_interval old.
    _wait_for_scrapes_after(prometheus, time.time())
    before_ok = prometheus.value(ok) or 0.0
    before_timed = prometheus.value(timed) or 0.0
    before_served = prometheus.value(served) or 0.0

    for _ in range(REQUESTS):
        assert fetch(stack.ports[DJANGO], HELLO).status == 200

    # Only these requests reach that server block (the health checks use :8080).
    after = prometheus.wait_for(
        ok,
        lambda samples: bool(samples) and samples[0].value >= before_ok + REQUESTS,
        timeout=SCRAPE_BOUND,
        what=f"{REQUESTS} more 2xx on {server}",
    )
    assert after[0].value == before_ok + REQUESTS, (before_ok, after)
    assert (prometheus.value(timed) or 0.0) >= before_timed + REQUESTS
    prometheus.wait_for(
        served,
        lambda samples: bool(samples) and samples[0].value >= before_served + REQUESTS,
        timeout=SCRAPE_BOUND,
        what=f"{REQUESTS} more in appserver_requests_total",
    )


def _wait_for_scrapes_after(prometheus: PrometheusAPI, since: float) -> None:
    """Until every edge and appserver target has been scraped after ``since`` (epoch s)."""
    for job in ("edge", "appserver"):
        query = f'timestamp(up{{job="{job}"}})'
        prometheus.wait_for(
            query,
            lambda samples: bool(samples) and all(sample.value > since for sample in samples),
            timeout=SCRAPE_BOUND,
            what=f"a scrape of every {job} target after the test started",
        )


def _documented_queries() -> list[str]:
    """The PromQL of docs/compose.md's monitoring section (```promql blocks, one per line)."""
    text = (REPO / "docs" / "compose.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", text, flags=re.S)
    queries = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert len(queries) >= 4, f"docs/compose.md has {len(queries)} promql lines"
    return queries


def test_the_documented_queries_run(stack: Topology) -> None:
    prometheus = stack.prometheus()
    queries = _documented_queries()
    assert any("edge_" in q for q in queries) and any("appserver_" in q for q in queries)
    # A syntax error or an unknown function raises; every one has data by now
    # (the requests of the test above, within the 5 m windows).
    empty = [query for query in queries if not prometheus.query(query)]
    assert not empty, f"no data for: {empty}"


def test_scaling_is_followed_by_discovery(stack: Topology) -> None:
    prometheus = stack.prometheus()
    _wait_for_replicas(prometheus, 2)
    try:
        stack.scale_appserver(3)
        scaled = time.monotonic()
        three = _wait_for_replicas(prometheus, 3)
        took = time.monotonic() - scaled
        print(f"3 targets {took:.1f} s after --scale appserver=3 returned: {_series(three)}")
    finally:
        stack.scale_appserver(2)
    scaled = time.monotonic()
    two = _wait_for_replicas(prometheus, 2)
    took = time.monotonic() - scaled
    print(f"2 targets {took:.1f} s after --scale appserver=2 returned: {_series(two)}")
