"""A client that connects before any worker runs is bounded by socket-timeout too.

Linux gives a connection its listener's options when the handshake completes,
not when a worker accepts it; the master sets them before it forks, so a
client queued while the first worker is still importing the app cannot hold
that worker past ``socket-timeout`` once it is accepted.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.clients import recv_all, uwsgi_request
from tests.support.processes import ServerProcess

SLOW_IMPORT_APP = """
import time

time.sleep(2)  # a big Django project, say: the worker is not accepting yet


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
"""


def test_a_client_queued_before_the_first_worker_is_cut_after_socket_timeout(
    start_appserver: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    app = tmp_path / "slow_import.py"
    app.write_text(SLOW_IMPORT_APP)
    server = start_appserver(
        "--socket", "127.0.0.1:0", "--wsgi-file", str(app), "--master", "--lazy-apps",
        "--socket-timeout", "1",
    )  # fmt: skip
    address = server.address("uwsgi")  # bound: the worker is still importing for 2 s
    with socket.create_connection(address, timeout=20) as sock:
        sock.sendall(b"\x00\x10")  # a header promising vars that never come
        started = time.monotonic()
        assert recv_all(sock, 20) == b""  # closed by the server, not by our timeout
    assert time.monotonic() - started < 10
    server.wait_for_log(r"read failed before the vars arrived: timed out \(socket-timeout\)")
    assert uwsgi_request(address, "GET", "/").status == 200
