"""Harakiri across a graceful reload: a draining old worker is still bounded by it."""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time

from tests.support.clients import recv_all, uwsgi_request
from tests.support.processes import ServerProcess


def _stats(server: ServerProcess) -> dict:
    host, port = server.wait_for_log(r"stats server on ([\d.]+):(\d+)").groups()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        return json.loads(recv_all(sock, 5))


def _wait_in_flight(server: ServerProcess, request_line: str, timeout: float = 15.0) -> int:
    """Wait until the scoreboard shows ``request_line`` running; return that worker's pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in _stats(server)["workers"]:
            for core in worker["cores"]:
                if request_line in core["vars"]:
                    return worker["pid"]
        time.sleep(0.05)
    raise AssertionError(f"{request_line} never showed up in the stats; log:\n{server.log()}")


def test_an_old_worker_draining_after_a_reload_still_gets_harakiri(start_test_app) -> None:
    server = start_test_app(
        "--processes", "1", "--harakiri", "3", "--stats", "127.0.0.1:0",
        "--worker-reload-mercy", "60",
    )  # fmt: skip
    server.wait_ready(1)
    address = server.address()
    outcome: list[object] = []

    def slow_request() -> None:
        started = time.monotonic()
        try:
            outcome.append(uwsgi_request(address, "GET", "/slow?30").status)
        except OSError as exc:  # the worker died under it: no response
            outcome.append(exc)
        outcome.append(time.monotonic() - started)

    client = threading.Thread(target=slow_request)
    client.start()
    old_pid = _wait_in_flight(server, "GET /slow?30")

    # Reload while the request runs: the old worker drains it, the new one serves.
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"reload: the new workers are ready")
    server.wait_for_log(
        rf"HARAKIRI ON WORKER 1 \(pid: {old_pid}, core: 0, old generation\): "
        r"GET /slow\?30 has run for [\d.]+s > harakiri 3s; killing it",
        timeout=20,
    )
    server.wait_for_log(
        rf"old worker \(pid: {old_pid}\) was killed by signal 9 \(SIGKILL\) \(harakiri\)"
    )
    client.join(30)
    assert isinstance(outcome[0], OSError), outcome
    assert outcome[1] < 20  # harakiri's 3 s (plus a tick), not worker-reload-mercy's 60 s
    assert "still busy" not in server.log()

    # The new generation serves.
    response = uwsgi_request(address, "GET", "/pid")
    assert response.status == 200
    assert json.loads(response.body)["pid"] != old_pid
    new_pids = re.findall(r"spawned worker 1 \(pid: (\d+)", server.log())
    assert str(json.loads(response.body)["pid"]) in new_pids
