"""build_stats shapes plain data into uWSGI's stats document (no master needed)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from appserver import scoreboard as sb
from appserver.scoreboard import CoreSnapshot, WorkerSnapshot
from appserver.stats import (
    MasterStats,
    SocketStats,
    WorkerStats,
    build_stats,
    listen_queue,
    render_stats,
    socket_stats,
)

MASTER = MasterStats(pid=10, uid=65534, gid=65534, cwd="/srv/app", started_at=1000.9)


def _core(
    busy_since: float = 0.0, requests: int = 0, rt: float = 0.0, line: str = ""
) -> CoreSnapshot:
    return CoreSnapshot(busy_since, busy_since and 5.0, requests, 1, 300, 2, rt, line)


def _worker(state: int, *cores: CoreSnapshot) -> WorkerSnapshot:
    return WorkerSnapshot(0, 11, state, sb.RECYCLE_NONE, 1001.7, 2, 1, tuple(cores))


def test_the_document_has_uwsgis_keys_and_units() -> None:
    busy = WorkerStats(
        1,
        11,
        False,
        _worker(sb.READY, _core(1234.5, 3, 0.3, "GET /slow"), _core(0.0, 1, 0.1)),
        4096,
        8192,
    )
    stopping = WorkerStats(2, 12, True, _worker(sb.READY, _core()), 1, 2)
    idle = WorkerStats(3, 13, False, _worker(sb.READY, _core()), 1, 2)
    document = build_stats(
        MASTER,
        [
            SocketStats("127.0.0.1:3031", "uwsgi", 3, 1024),
            SocketStats("/run/a.sock", "http", 2, 100),
        ],
        [busy, stopping, idle],
        now=2000.2,
    )
    assert (document["pid"], document["uid"], document["gid"], document["cwd"]) == (
        10,
        65534,
        65534,
        "/srv/app",
    )
    assert (document["started_at"], document["time"], document["listen_queue"]) == (1000, 2000, 5)
    assert document["sockets"][0] == {
        "name": "127.0.0.1:3031",
        "proto": "uwsgi",
        "queue": 3,
        "max_queue": 1024,
        "shared": 0,
        "can_offload": 0,
    }
    first = document["workers"][0]
    assert (first["id"], first["pid"], first["status"], first["accepting"]) == (1, 11, "busy", 1)
    assert (first["requests"], first["exceptions"], first["tx"]) == (4, 2, 600)
    assert first["avg_rt"] == 100_000 and first["running_time"] == 400_000  # microseconds
    assert (first["rss"], first["vsz"], first["last_spawn"], first["respawn_count"]) == (
        4096,
        8192,
        1001,
        2,
    )
    assert first["cores"][0]["vars"] == ["GET /slow"]
    assert first["cores"][0]["req_info"] == {"request_start": 1234}
    assert first["cores"][1]["in_request"] == 0 and first["cores"][1]["vars"] == []
    assert [w["status"] for w in document["workers"]] == ["busy", "sig", "idle"]
    json.dumps(document)  # serialisable as is


def test_a_worker_that_stopped_itself_is_sig_too() -> None:
    worker = WorkerStats(1, 11, False, _worker(sb.STOPPING, _core()), 0, 0)
    document = build_stats(MASTER, [], [worker], now=0.0)
    assert document["workers"][0]["status"] == "sig"
    assert document["workers"][0]["accepting"] == 0
    assert document["workers"][0]["avg_rt"] == 0


def test_render_is_the_json_of_build() -> None:
    assert json.loads(render_stats(MASTER, [], [], 5.0)) == build_stats(MASTER, [], [], 5.0)


def test_the_listen_queue_is_read_from_the_kernel() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(7)
        clients = [socket.create_connection(listener.getsockname()) for _ in range(2)]
        try:
            # The kernel queues a connection when the client's final ACK lands: wait for it.
            deadline = time.monotonic() + 5
            while listen_queue(listener)[0] < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert listen_queue(listener) == (2, 7)
            entry = socket_stats("x", "uwsgi", listener, backlog=99)
            assert (entry.queue, entry.max_queue) == (2, 7)
        finally:
            for client in clients:
                client.close()
    with socket.socket(socket.AF_UNIX) as unix:
        assert socket_stats("u", "uwsgi", unix, backlog=99).max_queue == 99  # unknown: the backlog


def test_a_unix_listener_s_queue_comes_from_sock_diag(tmp_path: Path) -> None:
    path = str(tmp_path / "q.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(5)
        assert listen_queue(listener) == (0, 5)
        clients = []
        try:
            for _ in range(3):
                client = socket.socket(socket.AF_UNIX)
                client.connect(path)  # queued at once: no handshake to wait for
                clients.append(client)
            assert listen_queue(listener) == (3, 5)
            entry = socket_stats("u", "uwsgi", listener, backlog=99)
            assert (entry.queue, entry.max_queue) == (3, 5)
        finally:
            for client in clients:
                client.close()
