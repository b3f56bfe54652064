"""The master's jobs, with real processes: respawn, harakiri, max-requests, reload, stop, stats."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import pytest

from tests.support.clients import uwsgi_request
from tests.support.processes import wait_until


def _pid_of_answer(address) -> int:
    return json.loads(uwsgi_request(address, "GET", "/pid").body)["pid"]


def test_worker_crash_is_logged_and_respawned(start_test_app) -> None:
    server = start_test_app("--processes", "1")
    server.wait_ready(1)
    address = server.address()
    first_pid = _pid_of_answer(address)
    with pytest.raises(OSError):
        uwsgi_request(address, "GET", "/crash")  # the worker calls os._exit(17) mid-request
    server.wait_for_log(
        rf"worker 1 \(pid: {first_pid}\) exited with status 17 unexpectedly; respawning it"
    )
    # The master respawns after MIN_WORKER_LIFETIME; a connection made meanwhile waits in the
    # listen backlog and is answered by the new worker, so one request is enough.
    response = uwsgi_request(address, "GET", "/pid")
    assert response.status == 200, server.log()
    assert json.loads(response.body)["pid"] != first_pid
    assert server.count(r"spawned worker 1 ") == 2


def test_harakiri_kills_a_stuck_worker_and_logs_the_uri(start_test_app) -> None:
    server = start_test_app(
        "--processes",
        "1",
        "--harakiri",
        "1",
    )
    server.wait_ready(1)
    address = server.address()
    started = time.monotonic()
    with pytest.raises(OSError):
        uwsgi_request(address, "GET", "/slow?30")  # no answer: the worker is killed
    assert time.monotonic() - started < 10
    server.wait_for_log(
        r"HARAKIRI ON WORKER 1 \(pid: \d+, core: 0\): GET /slow\?30 has run for [\d.]+s > harakiri 1s"
    )
    server.wait_for_log(r"killed by signal 9 \(SIGKILL\) \(harakiri\); respawning it")
    # The next request waits in the listen backlog and is served once the worker is back.
    assert uwsgi_request(address, "GET", "/echo").status == 200, server.log()
    assert server.count(r"spawned worker 1 ") == 2


def test_max_requests_recycles_without_refusing_a_request(start_test_app) -> None:
    server = start_test_app(
        "--processes",
        "1",
        "--max-requests",
        "20",
        "--max-requests-delta",
        "0",
    )
    server.wait_ready(1)
    address = server.address()
    pids = []
    for _ in range(60):
        response = uwsgi_request(address, "GET", "/pid")
        assert response.status == 200
        pids.append(json.loads(response.body)["pid"])
    assert len(set(pids)) >= 2, "the worker was never recycled"
    server.wait_for_log(r"served \d+ requests \(max-requests 20\): recycling it")
    assert "unexpectedly" not in server.log()


def _request_loop(address, stop: threading.Event, results: list, path: str = "/pid") -> None:
    deadline = time.monotonic() + 60
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            response = uwsgi_request(address, "GET", path)
            results.append(response.status)
        except OSError as exc:
            results.append(repr(exc))


def test_reload_under_load_loses_no_request(start_test_app, tmp_path) -> None:
    pidfile = tmp_path / "app.pid"
    server = start_test_app(
        "--processes",
        "2",
        "--pidfile",
        str(pidfile),
    )
    server.wait_ready(2)
    address = server.address()
    stop = threading.Event()
    results: list = []
    clients = [
        threading.Thread(target=_request_loop, args=(address, stop, results)) for _ in range(4)
    ]
    for client in clients:
        client.start()
    # The reload starts under load: the clients have been answered already.
    wait_until(
        lambda: len(results) >= 20, timeout=15, what="20 answers before the reload", process=server
    )
    from appserver.cli import main as cli_main

    assert cli_main(["--reload", str(pidfile)]) == 0
    server.wait_for_log(r"reload: the new workers are ready")
    server.wait_for_log(r"old worker \(pid: \d+\) exited with status 0")
    # ... and goes on under load: the new generation answers while the clients keep asking.
    after_reload = len(results)
    wait_until(
        lambda: len(results) >= after_reload + 20,
        timeout=15,
        what="20 answers after the reload",
        process=server,
    )
    stop.set()
    for client in clients:
        client.join()
    failures = [r for r in results if r != 200]
    assert failures == [], (
        f"{len(failures)} of {len(results)} requests failed: {failures[:5]}\n{server.log()}"
    )
    # The master is the same process (re-executed) and the pidfile still names it.
    assert int(pidfile.read_text().strip()) == server.pid
    assert uwsgi_request(address, "GET", "/echo").status == 200


def test_stop_with_pidfile_is_graceful(start_test_app, tmp_path) -> None:
    pidfile = tmp_path / "app.pid"
    server = start_test_app(
        "--pidfile",
        str(pidfile),
        "--stats",
        "127.0.0.1:0",
    )
    server.wait_ready(1)
    address = server.address()
    result: list = []
    slow = threading.Thread(
        target=lambda: result.append(uwsgi_request(address, "GET", "/slow?1.5"))
    )
    slow.start()
    server.wait_for_requests_in_flight("GET /slow?1.5")  # the stop finds it inside the app
    from appserver.cli import main as cli_main

    assert cli_main(["--stop", str(pidfile)]) == 0
    slow.join(timeout=20)
    assert result and result[0].status == 200, server.log()  # the request in flight finished
    assert server.wait(timeout=20) == 0
    assert not pidfile.exists()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=2)


def test_sigint_is_a_fast_stop(start_test_app) -> None:
    server = start_test_app("--processes", "2", "--stats", "127.0.0.1:0")
    server.wait_ready(2)
    threading.Thread(target=lambda: _swallow(server.address()), daemon=True).start()
    # A fast stop does not wait for a request in flight: one must be in flight to prove it.
    server.wait_for_requests_in_flight("GET /slow?20")
    started = time.monotonic()
    server.signal(signal.SIGINT)
    server.wait(timeout=10)
    assert time.monotonic() - started < 5


def _swallow(address) -> None:
    try:
        uwsgi_request(address, "GET", "/slow?20")
    except OSError:
        pass


def test_stats_server_speaks_uwsgi_json(start_test_app) -> None:
    server = start_test_app(
        "--processes",
        "2",
        "--threads",
        "3",
        "--stats",
        "127.0.0.1:0",
    )
    server.wait_ready(2)
    address = server.address()
    for _ in range(5):
        uwsgi_request(address, "GET", "/echo")
    stats = server.stats()
    assert stats["pid"] == server.pid
    assert [w["id"] for w in stats["workers"]] == [1, 2]
    assert sum(w["requests"] for w in stats["workers"]) == 5
    assert all(len(w["cores"]) == 3 for w in stats["workers"])
    assert stats["sockets"][0]["proto"] == "uwsgi"
    for key in ("listen_queue", "version", "cwd", "uid", "gid"):
        assert key in stats
    for worker in stats["workers"]:
        for key in (
            "pid",
            "exceptions",
            "status",
            "avg_rt",
            "rss",
            "vsz",
            "tx",
            "respawn_count",
            "harakiri_count",
            "running_time",
            "last_spawn",
            "signals",
        ):
            assert key in worker
