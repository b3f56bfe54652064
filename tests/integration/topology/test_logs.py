"""`docker compose logs edge` shows the combined access log line of a request just made.

deploy/edge.yaml's ``combined_id`` is nginx's ``combined`` with `` request_id=ID`` after it.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.support.topology import DJANGO, SPA, Topology, fetch

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

# nginx's `combined`, then deploy/edge.yaml's " request_id=$request_id":
# $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
TIME_LOCAL = r"\[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"


def combined(request: str, status: int, size: int, referer: str, agent: str) -> str:
    """A regex for the one combined line of this request (anywhere in a prefixed log)."""
    quoted = [re.escape(v) for v in (request, referer, agent)]
    return (
        rf'(?m)(?:^|\s)[0-9a-fA-F.:]+ - - {TIME_LOCAL} "{quoted[0]}" {status} {size} '
        rf'"{quoted[1]}" "{quoted[2]}" request_id=(?P<request_id>[!-~]+)$'
    )


LOG_WAIT = 10.0  # the access log is written per request; allow for output buffering


def _wait_for_line(stack: Topology, pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + LOG_WAIT
    while True:
        log = stack.edge_log()
        match = re.search(pattern, log)
        if match:
            return match
        if time.monotonic() > deadline:
            tail = "\n".join(log.splitlines()[-30:])
            raise AssertionError(f"no line matching {pattern!r} in the edge log; its tail:\n{tail}")
        time.sleep(0.25)


@pytest.mark.parametrize(
    ("port_name", "path", "status", "size"),
    [(DJANGO, "/hello", 200, 13), (SPA, "/app/about", 200, None)],
)
def test_edge_log_has_a_combined_line_for_the_request(
    stack: Topology, port_name: str, path: str, status: int, size: int | None
) -> None:
    probe = uuid.uuid4().hex
    agent = f"topology-test/{probe}"
    referer = f"http://example.test/from/{probe}"
    target = f"{path}?probe={probe}"
    response = fetch(
        stack.ports[port_name], target, headers={"User-Agent": agent, "Referer": referer}
    )
    assert response.status == status
    expected_size = size if size is not None else len(response.body)
    pattern = combined(f"GET {target} HTTP/1.1", status, expected_size, referer, agent)
    _wait_for_line(stack, pattern)


def test_health_checks_stay_out_of_the_edge_access_log(stack: Topology) -> None:
    # deploy/edge.yaml: `access_log: off` on the SPA server's /healthz, which the edge
    # container's healthcheck requests every 5 s.  (:8000/healthz is Django's own page,
    # proxied and logged like any request.)
    before = len(stack.edge_log())
    assert fetch(stack.ports[SPA], "/healthz").status == 200
    probe = uuid.uuid4().hex
    assert fetch(stack.ports[SPA], f"/app/about?probe={probe}").status == 200
    _wait_for_line(stack, rf"GET /app/about\?probe={probe} ")
    assert not re.search(r'"GET /healthz HTTP', stack.edge_log()[before:]), "a /healthz line"


def test_one_request_id_is_in_the_edge_appserver_and_django_lines(stack: Topology) -> None:
    """`docker compose logs | grep ID` finds edge's line and the appserver replica's."""
    ident = f"topology-{uuid.uuid4()}"
    target = f"/hello?probe={uuid.uuid4().hex}"
    response = fetch(stack.ports[DJANGO], target, headers={"X-Request-ID": ident})
    assert response.status == 200
    # fetch sends no Referer or User-Agent: combined writes "-" for them.
    edge_line = _wait_for_line(stack, combined(f"GET {target} HTTP/1.1", 200, 13, "-", "-"))
    assert edge_line["request_id"] == ident
    deadline = time.monotonic() + LOG_WAIT
    pattern = rf"GET {re.escape(target)} => generated 13 bytes .* request_id={re.escape(ident)}$"
    while not re.search(pattern, stack.logs(), re.MULTILINE):
        if time.monotonic() > deadline:
            raise AssertionError(f"no appserver line with {ident}; logs:\n{stack.logs(tail=40)}")
        time.sleep(0.25)


def test_the_appserver_healthcheck_stays_out_of_its_request_log(stack: Topology) -> None:
    """deploy/appserver.ini's log-drain: the uwsgi GET /healthz the healthcheck sends every 5 s.

    In compose, edge starts only once every appserver replica is healthy, so the probe has
    run by now; the local mode has no healthcheck, and its readiness polls go through edge
    from 127.0.0.1 like the probe, so only the compose stack can tell the two apart.
    """
    probe_line = re.compile(r"127\.0\.0\.1 \(-\) \[[^]]+\] GET /healthz =>")
    if stack.mode == "compose":
        assert not probe_line.search(stack.logs()), "a healthcheck line in the appserver log"
    # Traffic is still logged, with its ID.
    target = f"/hello?probe={uuid.uuid4().hex}"
    assert fetch(stack.ports[DJANGO], target).status == 200
    deadline = time.monotonic() + LOG_WAIT
    while not re.search(
        rf"GET {re.escape(target)} => .* request_id=[0-9a-f]{{32}}$", stack.logs(), re.M
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"no appserver line for {target}; logs:\n{stack.logs(tail=40)}")
        time.sleep(0.25)
