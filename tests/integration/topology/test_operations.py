"""Operations under load: stop a replica, scale up, reload edge.

Each test puts the stack back as it found it (two appserver replicas).  The
load is GET requests on fresh connections from a few client threads, bounded
by a count and a time; a request fails when it raises or is not a 200.

The bounds stated here are what a user can rely on with deploy/edge.yaml
(`resolve: 1s`, `proxy_connect_timeout: 2s`, `max_fails: 1`, `fail_timeout: 5s`):

* a stopped replica: no failed request, and no request served by it, from
  NOTICE_BOUND seconds after it has stopped (edge notices through DNS, within
  `resolve`, or through a refused connect, at once; GETs are retried on the
  other replica meanwhile, so in practice nothing fails at all);
* a new replica (`--scale appserver=3`): it serves requests within
  SCALE_BOUND seconds of `up` returning (boot ~2 s + `resolve` + at worst one
  `fail_timeout` if edge tried it before it listened);
* SIGHUP: zero failed requests, during and after two reloads.
"""

from __future__ import annotations

import time

import pytest

from tests.support.topology import (
    DJANGO,
    GUNICORN,
    SPA,
    Load,
    Topology,
    failures,
    fetch,
    summary,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

NOTICE_BOUND = 3.0
SCALE_BOUND = 20.0
RESTORE_BOUND = 45.0
HELLO = "/hello"


def _wait_for_replica_traffic(stack: Topology, name: str, bound: float) -> tuple[float, list[str]]:
    """GET /hello until ``name`` serves one; return the seconds it took and any failures seen."""
    started = time.monotonic()
    failed: list[str] = []
    while time.monotonic() - started < bound:
        try:
            response = fetch(stack.ports[DJANGO], HELLO, timeout=10)
        except OSError as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
            continue
        if response.status != 200:
            failed.append(f"HTTP {response.status}")
        elif stack.replica_of(response.header("x-served-by")) == name:
            return time.monotonic() - started, failed
        time.sleep(0.05)
    raise AssertionError(f"{name} served no request within {bound:.0f} s (failures: {failed})")


def test_stopping_a_replica_loses_no_request_after_edge_notices(stack: Topology) -> None:
    replicas = stack.appserver_replicas()
    assert len(replicas) == 2, replicas
    victim = replicas[-1]
    try:
        with Load(
            [(stack.ports[DJANGO], HELLO)], concurrency=4, max_seconds=120, max_requests=100_000
        ) as load:
            load.wait_until(
                lambda outcomes: (
                    victim in {stack.replica_of(o.served_by) for o in outcomes if o.ok}
                ),
                30,
                f"a request served by {victim}",
            )
            stop_issued = load.now()
            stack.stop_replica(victim)  # SIGTERM; returns once it has exited
            stopped = load.now()
            load.wait_for_answers(40, 60, after=stopped + NOTICE_BOUND)
        outcomes = load.stop()

        before = [o for o in outcomes if o.started < stop_issued]
        window = [o for o in outcomes if stop_issued <= o.started < stopped + NOTICE_BOUND]
        after = [o for o in outcomes if o.started >= stopped + NOTICE_BOUND]
        timing = f"stop issued at +{stop_issued:.2f}s, stopped at +{stopped:.2f}s"

        assert victim in {stack.replica_of(o.served_by) for o in before}, "victim got no traffic"
        assert len(after) >= 20, (
            f"too little traffic after the stop ({timing}): {summary(outcomes)}"
        )
        assert not failures(after), f"failures after the notice bound ({timing}):\n{summary(after)}"
        served_after = {stack.replica_of(o.served_by) for o in after}
        assert victim not in served_after, f"{victim} still served after it stopped ({timing})"
        # Not part of the bound, but reported when the test fails elsewhere.
        print(f"{timing}; during the notice window: {summary(window)}")
    finally:
        stack.start_replica(victim)
        _wait_for_replica_traffic(stack, victim, RESTORE_BOUND)


def test_scaling_up_a_third_replica_gets_traffic_by_itself(stack: Topology) -> None:
    before = set(stack.appserver_replicas())
    assert len(before) == 2, before
    try:
        stack.scale_appserver(3)
        new = set(stack.appserver_replicas()) - before
        assert len(new) == 1, (before, new)
        (name,) = new
        took, failed = _wait_for_replica_traffic(stack, name, SCALE_BOUND)
        assert not failed, f"requests failed while {name} joined: {failed}"
        print(f"{name} served its first request {took:.1f} s after `up --scale` returned")
    finally:
        stack.scale_appserver(2)
    # Back to two, and the one that left is not asked any more.
    assert len(stack.appserver_replicas()) == 2
    time.sleep(NOTICE_BOUND)
    for _ in range(10):
        assert fetch(stack.ports[DJANGO], HELLO).status == 200


def test_sighup_reload_under_load_loses_no_request(stack: Topology) -> None:
    targets = [
        (stack.ports[DJANGO], HELLO),
        (stack.ports[GUNICORN], HELLO),
        (stack.ports[DJANGO], "/static/shop/css/site.css"),
        (stack.ports[SPA], "/app/items"),
    ]
    workers = [stack.edge_worker_pids()]
    assert workers[0], "no edge worker process found"
    with Load(targets, concurrency=6, max_seconds=20, max_requests=6000) as load:
        reloads = []
        for _ in range(2):
            time.sleep(2.0)
            reloads.append(load.now())
            stack.reload_edge()
            workers.append(_wait_for_new_workers(stack, workers[-1]))
        time.sleep(2.0)
    outcomes = load.stop()
    when = ", ".join(f"+{t:.2f}s" for t in reloads)
    assert not failures(outcomes), f"reloads at {when}:\n{summary(outcomes)}"
    after = [o for o in outcomes if o.started > reloads[-1] + 1.0]
    assert len(after) >= 20, f"edge stopped serving after the reload: {summary(outcomes)}"
    assert {o.target for o in after} == {f":{port}{path}" for port, path in targets}


def _wait_for_new_workers(stack: Topology, old: set[int], bound: float = 15.0) -> set[int]:
    """The edge's workers once the generation started before SIGHUP has gone."""
    deadline = time.monotonic() + bound
    while True:
        current = stack.edge_worker_pids()
        if current and not current & old:
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"SIGHUP did not replace the edge workers {old}: now {current}")
        time.sleep(0.1)
