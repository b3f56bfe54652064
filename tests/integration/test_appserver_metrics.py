"""appserver's metrics-http (/metrics, /status, /status.json) against a real appserver (issue 11).

Every figure is checked against the traffic the test itself sent: N requests
are exactly N in ``appserver_requests_total`` summed over the workers, also
after a worker is SIGKILLed and respawned and after a graceful reload
(SIGHUP).  The listen queue is filled for real: with every thread held by a
request whose body has not arrived, K more connections wait in the kernel's
accept queue, and the metric must say K.  The real ``promtool`` lints the
exposition and headless Chromium renders the status page (its screenshot is
kept under build/screenshots/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import WSGI_APP
from tests.support import chromium
from tests.support.processes import ServerProcess, wait_until

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

Starter = Callable[..., ServerProcess]


class Observed:
    """An appserver with metrics-http on, and how to read it."""

    def __init__(self, process: ServerProcess) -> None:
        self.process = process
        match = process.wait_for_log(r"metrics server on http://([\d.]+):(\d+)/metrics")
        self.metrics_address = (match.group(1), int(match.group(2)))
        self.http = process.address("http")

    def get_raw(self, address: tuple[str, int], request: bytes) -> bytes:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data

    def admin(self, target: str) -> tuple[int, bytes]:
        raw = self.get_raw(
            self.metrics_address, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        head, _, body = raw.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    def metrics(self) -> str:
        status, body = self.admin("/metrics")
        assert status == 200, body
        return body.decode()

    def status(self) -> dict[str, Any]:
        status, body = self.admin("/status.json")
        assert status == 200, body
        document: dict[str, Any] = json.loads(body)
        return document

    def app(self, target: str) -> int:
        raw = self.get_raw(
            self.http, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        return int(raw.split(b" ", 2)[1])

    def total(self, name: str = "appserver_requests_total") -> float:
        return sum(value for _, value in samples(self.metrics(), name))

    def wait_total(self, expected: float, name: str = "appserver_requests_total") -> None:
        """Counted once the response has gone out, so a scrape may trail the client a moment."""
        seen: list[float] = []

        def reached() -> bool:
            seen.append(self.total(name))
            assert seen[-1] <= expected, f"{name} went past {expected}: {seen[-1]}"
            return seen[-1] == expected

        wait_until(
            reached,
            timeout=15,
            what=f"{name} == {expected} (saw {seen[-1:]})",
            process=self.process,
        )

    def pids(self) -> set[int]:
        return {worker["pid"] for worker in self.status()["workers"]}

    def wait_workers(
        self, count: int, exclude: frozenset[int] | set[int] = frozenset()
    ) -> set[int]:
        def ready() -> set[int] | None:
            workers = self.status()["workers"]
            pids = {w["pid"] for w in workers if w["status"] == "idle"}
            if len(workers) == count and len(pids) == count and not pids & exclude:
                return pids
            return None

        return wait_until(ready, timeout=30, what=f"{count} idle workers", process=self.process)


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)", line)
        assert match, f"not an exposition line: {line!r}"
        if match.group(1) == name:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
            found.append((labels, float(match.group(3))))
    return found


def value(text: str, name: str, **labels: str) -> float:
    for found, number in samples(text, name):
        if found == labels:
            return number
    raise AssertionError(f"{name}{labels} not in:\n{text}")


@pytest.fixture
def observed(start_appserver: Starter) -> Observed:
    process = start_appserver(
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master",
        "--processes", "2", "--threads", "2", "--metrics-http", "127.0.0.1:0",
        "--socket-timeout", "60",  # a held request (held()) waits for its body that long
    )  # fmt: skip
    server = Observed(process)
    server.wait_workers(2)
    return server


def _send(server: Observed, count: int, target: str = "/environ") -> None:
    for _ in range(count):
        assert server.app(target) == 200


def test_counts_are_exact_across_a_sigkill_respawn_and_a_reload(observed: Observed) -> None:
    n = 30
    text = observed.metrics()
    assert {labels["worker"] for labels, _ in samples(text, "appserver_requests_total")} == {
        "1",
        "2",
    }
    assert observed.total() == 0
    _send(observed, n)
    for _ in range(3):
        assert observed.app("/boom") == 500
    observed.wait_total(n + 3)
    observed.wait_total(3, "appserver_exceptions_total")
    assert observed.total("appserver_request_duration_seconds_count") == n + 3

    # SIGKILL a worker: its counts are folded into the retained totals when it is reaped.
    victim = next(w for w in observed.status()["workers"] if w["id"] == 1)
    before = value(observed.metrics(), "appserver_requests_total", worker="1")
    os.kill(victim["pid"], signal.SIGKILL)
    observed.process.wait_for_log(rf"worker 1 \(pid: {victim['pid']}\) was killed by signal 9")
    observed.wait_workers(2, exclude={victim["pid"]})
    text = observed.metrics()
    assert value(text, "appserver_worker_respawns_total", worker="1") == 1
    assert value(text, "appserver_worker_respawns_total", worker="2") == 0
    assert value(text, "appserver_requests_total", worker="1") == before
    assert observed.total() == n + 3
    _send(observed, n)
    observed.wait_total(2 * n + 3)

    # SIGHUP: the master re-executes, keeps the metrics listener and the retained totals;
    # the old generation drains and exits; nothing resets, nothing doubles.
    old = observed.pids()
    last_reload = value(
        observed.metrics(), "appserver_config_last_reload_success_timestamp_seconds"
    )
    observed.process.signal(signal.SIGHUP)
    assert observed.total() == 2 * n + 3  # answered across the exec (queued, not refused)
    observed.process.wait_for_log(r"reload: the new workers are ready")
    observed.wait_workers(2, exclude=old)
    text = observed.metrics()
    assert value(text, "appserver_config_reloads_total") == 1
    assert value(text, "appserver_config_last_reload_success_timestamp_seconds") > last_reload
    assert value(text, "appserver_workers") == 2
    assert value(text, "appserver_worker_respawns_total", worker="1") == 1  # kept
    assert observed.total() == 2 * n + 3
    assert observed.total("appserver_exceptions_total") == 3
    _send(observed, n)
    observed.wait_total(3 * n + 3)
    assert observed.total("appserver_request_duration_seconds_count") == 3 * n + 3
    assert observed.status()["requests_total"] == 3 * n + 3


def test_promtool_accepts_the_exposition(observed: Observed) -> None:
    _send(observed, 3)
    assert observed.app("/boom") == 500
    observed.wait_total(4)
    text = observed.metrics()
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"promtool:\n{result.stdout}{result.stderr}\n{text}"
    for family in (
        "appserver_requests_total",
        "appserver_exceptions_total",
        "appserver_busy_threads",
        "appserver_idle_threads",
        "appserver_worker_respawns_total",
        "appserver_worker_rss_bytes",
        "appserver_harakiri_total",
        "appserver_listen_queue",
        "appserver_listen_queue_max",
        "appserver_request_duration_seconds",
    ):
        assert f"# TYPE {family} " in text, family
    assert value(text, "appserver_idle_threads", worker="1") == 2
    assert 1_000_000 < value(text, "appserver_worker_rss_bytes", worker="1") < 2**34


def test_other_paths_and_methods_are_refused(observed: Observed) -> None:
    assert observed.admin("/")[0] == 404
    assert observed.admin("/metrics/../admin")[0] == 404
    raw = observed.get_raw(observed.metrics_address, b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD" in raw
    status, body = observed.admin("/status")
    assert status == 200 and b"<title>appserver status</title>" in body


@contextmanager
def held(address: tuple[str, int], target: str) -> Iterator[socket.socket]:
    """A request whose body has not arrived: its thread waits in wsgi.input.read()."""
    sock = socket.create_connection(address, timeout=30)
    try:
        sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        yield sock
        sock.sendall(b"x")  # released: the app answers
        assert sock.recv(64).startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()


def test_the_listen_queue_is_what_waits_in_the_kernel(
    start_appserver: Starter, tmp_path: Path
) -> None:
    unix_path = tmp_path / "app.sock"
    process = start_appserver(
        "--http-socket", "127.0.0.1:0", "--socket", str(unix_path), "--wsgi-file", str(WSGI_APP),
        "--master", "--processes", "1", "--threads", "1", "--listen", "8",
        "--socket-timeout", "60", "--metrics-http", "127.0.0.1:0",
    )  # fmt: skip
    server = Observed(process)
    server.wait_workers(1)
    listener = f"{server.http[0]}:{server.http[1]}"
    text = server.metrics()
    assert value(text, "appserver_listen_queue", listener=listener, proto="http") == 0
    assert value(text, "appserver_listen_queue_max", listener=listener, proto="http") == 8
    assert value(text, "appserver_listen_queue_max", listener=str(unix_path), proto="uwsgi") == 8
    waiting: list[socket.socket] = []
    with held(server.http, "/echo?held-by-the-test"):
        wait_until(
            lambda: value(server.metrics(), "appserver_busy_threads", worker="1") == 1,
            timeout=15,
            what="the one thread busy",
            process=process,
        )
        try:
            for _ in range(5):
                waiting.append(socket.create_connection(server.http, timeout=10))
            for _ in range(3):
                client = socket.socket(socket.AF_UNIX)
                client.connect(str(unix_path))
                waiting.append(client)

            def queued() -> bool:
                text = server.metrics()
                return (
                    value(text, "appserver_listen_queue", listener=listener, proto="http") == 5
                    and value(
                        text, "appserver_listen_queue", listener=str(unix_path), proto="uwsgi"
                    )
                    == 3
                )

            wait_until(queued, timeout=15, what="5 + 3 connections queued", process=process)
            text = server.metrics()
            assert value(text, "appserver_idle_threads", worker="1") == 0
            (busy,) = server.status()["busy_requests"]
            assert busy["request"] == "POST /echo?held-by-the-test"
        finally:
            for client in waiting:
                client.close()


def test_harakiri_kills_are_counted(start_appserver: Starter) -> None:
    process = start_appserver(
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master",
        "--harakiri", "1", "--metrics-http", "127.0.0.1:0",
    )  # fmt: skip
    server = Observed(process)
    server.wait_workers(1)
    with socket.create_connection(server.http, timeout=30) as sock:
        sock.sendall(b"GET /slow?10 HTTP/1.1\r\nHost: x\r\n\r\n")
        process.wait_for_log(r"HARAKIRI ON WORKER 1 ")
    server.wait_workers(1)
    text = server.metrics()
    assert value(text, "appserver_harakiri_total", worker="1") == 1
    assert value(text, "appserver_worker_respawns_total", worker="1") == 1
    assert value(text, "appserver_requests_total", worker="1") == 0  # killed, never answered


def test_the_status_page_in_headless_chromium(observed: Observed, tmp_path: Path) -> None:
    _send(observed, 4)
    observed.wait_total(4)
    url = f"http://{observed.metrics_address[0]}:{observed.metrics_address[1]}/status"
    with held(observed.http, "/echo?shown-on-the-status-page"):
        wait_until(
            lambda: observed.status()["busy_requests"],
            timeout=15,
            what="the held request on /status.json",
        )
        page = chromium.dump_dom(url, tmp_path)
        kept = chromium.screenshot(url, tmp_path, "appserver-status.png")
    assert "appserver status" in page
    assert "by master " in page, page  # the script rendered the JSON
    assert "POST /echo?shown-on-the-status-page" in page, page
    pids = [str(worker["pid"]) for worker in observed.status()["workers"]]
    assert all(f">{pid}<" in page for pid in pids), page
    print(f"status page screenshot: {kept}")


def test_a_metrics_address_in_use_is_one_line_and_the_app_is_still_served(
    start_appserver: Starter,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        process = start_appserver(
            "--http-socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master",
            "--metrics-http", f"127.0.0.1:{port}",
        )  # fmt: skip
        process.wait_for_log(
            rf"metrics server disabled: metrics-http 127\.0\.0\.1:{port}: cannot bind: "
            r"Address already in use"
        )
        process.wait_for_log(r"spawned worker 1 ")
        with socket.create_connection(process.address("http"), timeout=10) as client:
            client.sendall(b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert client.recv(64).startswith(b"HTTP/1.1 200 ")
