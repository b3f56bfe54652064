"""Requests through :8000 spread over every appserver replica (X-Served-By: host/pid)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.support.topology import DJANGO, GUNICORN, Topology, fetch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

REQUESTS = 40


def test_requests_spread_over_both_appserver_replicas(stack: Topology) -> None:
    replicas = stack.appserver_replicas()
    assert len(replicas) == 2, replicas
    served: Counter[str | None] = Counter()
    processes: set[str] = set()
    for _ in range(REQUESTS):
        response = fetch(stack.ports[DJANGO], "/hello")
        assert response.status == 200
        served_by = response.header("x-served-by")
        served[stack.replica_of(served_by)] += 1
        processes.add(served_by or "")
    assert set(served) == set(replicas), served
    # Sequential requests are round-robined between idle replicas: neither
    # gets more than three quarters of them.
    assert max(served.values()) <= REQUESTS * 3 // 4, served
    assert len(processes) >= 2, processes


def test_gunicorn_port_never_reaches_the_appserver_pool(stack: Topology) -> None:
    for _ in range(10):
        response = fetch(stack.ports[GUNICORN], "/hello")
        assert response.status == 200
        assert stack.replica_of(response.header("x-served-by")) is None
