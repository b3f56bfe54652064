"""limit_req / limit_conn zones are shared by all workers of the edge, as in nginx.

With ``worker_processes: 2`` and SO_REUSEPORT, new connections land on both
workers; a client must still get one zone's allowance, not one per worker.
"""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.edge import EdgeProcess, read_response, request, start_edge, write_config
from tests.support.processes import wait_until, wait_until_read

CONFIG = """
worker_processes: 2
error_log: {level: info}
limit_req_zones:
  pace: {rate: 2r/s}
  slow: {rate: 1r/m}
limit_conn_zones:
  one: {}
servers:
  - listen: 127.0.0.1:0
    locations:
      - path: /
        return: {status: 200, body: "ok\\n"}
      - path: = /paced
        return: {status: 200, body: "paced\\n"}
        limit_req: {zone: pace, burst: 0, status: 429}
      - path: = /once
        return: {status: 200, body: "once\\n"}
        limit_req: {zone: slow, burst: 0, status: 429}
      - path: = /conn
        return: {status: 200, body: "conn\\n"}
        limit_conn: {zone: one, max: 1}
      - path: /probe/
        return: 403
        access: [deny all]
"""


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[EdgeProcess, tuple[str, int]]]:
    config = write_config(tmp_path, CONFIG)
    process = start_edge(["-c", str(config)], cwd=tmp_path, log_path=tmp_path / "edge.log")
    try:
        (address,) = process.ready()
        process.wait_ready(2)
        process.wait_for_log(r"spawned worker 2 \(pid \d+\)")
        _wait_until_both_workers_serve(process, address)
        yield process, address
    finally:
        process.stop()


def _worker_pids(edge: EdgeProcess) -> set[int]:
    return set(edge.worker_pids())


def _wait_until_both_workers_serve(edge: EdgeProcess, address: tuple[str, int]) -> None:
    # Each worker logs its pid with the refusal; SO_REUSEPORT spreads new connections.
    def both_answered() -> bool:
        assert request(address, target="/probe/ready", timeout=5).status == 403
        return _pids_logging(edge, "access forbidden by rule") == _worker_pids(edge)

    wait_until(both_answered, timeout=15, what="both workers to answer", process=edge)


def _pids_logging(edge: EdgeProcess, message: str) -> set[int]:
    return {int(pid) for pid in re.findall(rf"\[error\] (\d+)#0: \*\d+ {message}", edge.log())}


def test_limit_req_allows_one_zones_rate_across_both_workers(
    edge: tuple[EdgeProcess, tuple[str, int]],
) -> None:
    process, address = edge
    statuses: list[int] = []
    started = time.monotonic()
    while time.monotonic() - started < 2.2 and len(statuses) < 2000:
        statuses.append(request(address, target="/paced", timeout=5).status)
    elapsed = time.monotonic() - started
    assert set(statuses) == {200, 429}
    accepted = statuses.count(200)
    # 2r/s with no burst: accepted requests are at least 500 ms apart.  Two zones (one
    # per worker) would let through about twice this.
    assert 2 <= accepted <= 1 + int(elapsed / 0.5), (accepted, elapsed)
    # Both workers did refuse requests: the connections really were spread.
    assert _pids_logging(process, "limiting requests") == _worker_pids(process)


def test_limit_conn_counts_requests_in_progress_on_any_worker(
    edge: tuple[EdgeProcess, tuple[str, int]],
) -> None:
    process, address = edge
    with socket.create_connection(address, timeout=5) as holder:
        # The body is read before the handler runs: this request holds the slot.
        holder.sendall(b"POST /conn HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        # Its head read, the worker takes the slot in the same turn of its loop.
        wait_until_read(holder, process.worker_pids(), process=process)
        statuses = [request(address, target="/conn", timeout=5).status for _ in range(30)]
        holder.sendall(b"cd")
        assert read_response(holder).status == 200
    assert statuses == [503] * 30
    assert _pids_logging(process, "limiting connections") == _worker_pids(process)
    # The slot is given back before the response's last bytes leave: a client that
    # has read a response may send the next one at once, to either worker.
    assert [request(address, target="/conn").status for _ in range(100)] == [200] * 100


def test_a_reload_keeps_the_zones_state(edge: tuple[EdgeProcess, tuple[str, int]]) -> None:
    process, address = edge
    assert request(address, target="/once").status == 200
    assert request(address, target="/once").status == 429
    process.signal(signal.SIGHUP)
    process.wait_for_log(r"reload complete", timeout=15)
    # The new generation's workers map the same zone: still over the 1r/m rate.
    statuses = {request(address, target="/once").status for _ in range(10)}
    assert statuses == {429}
