"""edge's HTTP front as a real process on port 0: raw bytes in, status and connection state out.

One edge instance (module scope) serves most tests; the process-level ones
(reload, graceful stop, workers) start their own.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.edge import (
    EdgeProcess,
    closed_by_peer,
    exchange_raw,
    read_response,
    request,
    start_edge,
    write_config,
)
from tests.support.processes import REPO, wait_until, wait_until_read

FRONT = """
error_log: {level: info}
limit_req_zones:
  strict: {rate: 1r/m}
limit_conn_zones:
  one: {}
real_ip:
  trusted: [127.0.0.2/32]
  header: X-Forwarded-For
servers:
  - listen: 127.0.0.1:0
    server_name: front.test
    client_max_body_size: 1k
    locations:
      - path: /
        return: {status: 200, body: "uri=$uri\\n"}
      - path: = /strict
        return: {status: 200, body: "ok\\n"}
        limit_req: {zone: strict, burst: 0, nodelay: true, status: 429}
      - path: = /conn
        return: {status: 200, body: "ok\\n"}
        limit_conn: {zone: one, max: 1}
      - path: /private/
        return: {status: 200, body: "private\\n"}
        access: [deny 127.0.0.1, allow all]
      - path: /local/
        return: {status: 200, body: "local\\n"}
        access: [allow 127.0.0.1, deny all]
  # Another address: two servers on one address share its socket (and its default server).
  - listen: 127.0.0.3:0
    server_name: slow.test
    client_header_timeout: 1s
    locations:
      - path: /
        return: {status: 200, body: "slow\\n"}
"""


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EdgeProcess, list[tuple[str, int]]]]:
    directory = tmp_path_factory.mktemp("front")
    config = write_config(directory, FRONT)
    edge = start_edge(["-c", str(config)], cwd=directory, log_path=directory / "edge.log")
    try:
        yield edge, edge.ready(2)
    finally:
        edge.stop()


@pytest.fixture
def address(front: tuple[EdgeProcess, list[tuple[str, int]]]) -> tuple[str, int]:
    return front[1][0]


def _log_after(edge: EdgeProcess, mark: int, pattern: str) -> re.Match[str]:
    return edge.wait_for_log(pattern, timeout=5, start=mark)


# --- edge -t --------------------------------------------------------------------------------


def _edge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "edge", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_mode_prints_ok_or_every_error_with_its_path(tmp_path: Path) -> None:
    good = write_config(tmp_path, FRONT, "good.yaml")
    result = _edge("-t", "-c", str(good), cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "ok\n")
    bad = write_config(
        tmp_path,
        """
servers:
  - listen: 127.0.0.1:80
    locations:
      - path: /static/
        alias: ./does-not-exist/
      - path: /
        proxy: nowhere
""",
        "bad.yaml",
    )
    result = _edge("-t", "-c", str(bad), cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{bad}: servers[0].locations[0].alias: directory does not exist",
        f"{bad}: servers[0].locations[1].proxy: no upstream named 'nowhere'",
    ]
    quick = _edge("-t", "--listen", "127.0.0.1:0", "--root", str(tmp_path), cwd=tmp_path)
    assert (quick.returncode, quick.stdout) == (0, "ok\n")
    wrong = _edge("-t", "--proxy", "ftp://x:1", cwd=tmp_path)
    assert wrong.returncode == 1 and "--proxy: expected uwsgi://HOST:PORT" in wrong.stderr


# --- malformed requests: status AND the connection closed ------------------------------------

MALFORMED = {
    "cl-and-te": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "duplicate-cl": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    "bad-cl": (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\nabc", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n  b\r\n\r\n", 400),
    "bare-lf": (b"GET / HTTP/1.1\nHost: a\n\n", 400),
    "bad-chunk-size": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nabcde\r\n0\r\n\r\n",
        400,
    ),
    "te-in-http10": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "no-host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "bad-version": (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
    "dot-dot-escape": (b"GET /a/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "oversized-header": (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    "oversized-header-block": (
        b"GET / HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 4000) for i in range(10))
        + b"\r\n",
        431,
    ),
    "oversized-uri": (b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    "body-too-large-cl": (
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2048\r\n\r\n" + b"x" * 2048,
        413,
    ),
    "body-too-large-chunked": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"200\r\n"
        + b"x" * 512
        + b"\r\n"
        + b"200\r\n"
        + b"x" * 512
        + b"\r\n"
        + b"1\r\nx\r\n0\r\n\r\n",
        413,
    ),
    "unknown-coding": (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_gets_its_status_and_the_connection_is_closed(
    address: tuple[str, int], case: str
) -> None:
    raw, status = MALFORMED[case]
    # A valid request follows on the same connection: it must never be answered.
    response, closed = exchange_raw(address, raw + b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response.status == status, response.raw
    assert response.header("Connection") == "close"
    assert closed
    assert b"smuggled" not in response.raw


def test_refused_request_is_access_logged(front: tuple[EdgeProcess, list[tuple[str, int]]]) -> None:
    edge, (address, _) = front
    mark = len(edge.log())
    exchange_raw(
        address, b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    )
    _log_after(edge, mark, r'127\.0\.0\.1 - - \[[^\]]+\] "GET /x HTTP/1\.1" 400 \d+ "-" "-"')
    _log_after(edge, mark, r"\[info\] \d+#0: \*\d+ client sent invalid request: .*Content-Length")


# --- keep-alive, pipelining, HTTP/1.0, 100-continue, chunked ---------------------------------


def test_three_pipelined_requests_are_answered_in_order(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in (1, 2, 3)))
        bodies = [read_response(sock).body for _ in range(3)]
        assert bodies == [b"uri=/1\n", b"uri=/2\n", b"uri=/3\n"]
        sock.sendall(b"GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        last = read_response(sock)
        assert (last.body, last.header("Connection")) == (b"uri=/4\n", "close")
        assert closed_by_peer(sock)


def test_http10_gets_one_response_then_close(address: tuple[str, int]) -> None:
    response, closed = exchange_raw(address, b"GET /old HTTP/1.0\r\n\r\n")
    assert (response.status, response.body, response.header("Connection")) == (
        200,
        b"uri=/old\n",
        "close",
    )
    assert closed
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert read_response(sock).header("Connection") == "keep-alive"
        sock.sendall(b"GET /b HTTP/1.0\r\n\r\n")
        assert read_response(sock).body == b"uri=/b\n"
        assert closed_by_peer(sock)


def test_expect_100_continue_then_the_body(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(
            b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = read_response(sock)
        assert interim.status == 100
        sock.sendall(b"hello")
        assert read_response(sock).status == 200


def test_chunked_body_is_accepted_and_the_connection_kept(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(
            b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert read_response(sock).status == 200
        assert read_response(sock).body == b"uri=/after\n"


# --- protection -----------------------------------------------------------------------------


def test_limit_req_answers_429_once_the_rate_is_exceeded(address: tuple[str, int]) -> None:
    assert request(address, target="/strict").status == 200
    assert request(address, target="/strict").status == 429


def test_limit_conn_refuses_a_second_request_in_progress(
    front: tuple[EdgeProcess, list[tuple[str, int]]],
) -> None:
    edge, (address, _) = front
    with socket.create_connection(address, timeout=5) as holder:
        # The body is read before the handler runs, so this request holds its slot.
        holder.sendall(b"POST /conn HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        # Its head read, the edge takes the slot in the same turn of its loop.
        wait_until_read(holder, edge.worker_pids(), process=edge)
        assert request(address, target="/conn").status == 503
        holder.sendall(b"cd")
        assert read_response(holder).status == 200
    assert request(address, target="/conn").status == 200


def test_allow_and_deny(address: tuple[str, int]) -> None:
    assert request(address, target="/private/x").status == 403
    assert request(address, target="/local/x").status == 200


def test_real_ip_from_a_trusted_proxy_decides_access_and_is_logged(
    front: tuple[EdgeProcess, list[tuple[str, int]]],
) -> None:
    edge, (address, _) = front
    mark = len(edge.log())
    with socket.create_connection(address, timeout=5, source_address=("127.0.0.2", 0)) as sock:
        sock.sendall(
            b"GET /private/y HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\n\r\n"
        )
        assert read_response(sock).status == 200  # deny 127.0.0.1 does not apply to the real client
    _log_after(edge, mark, r'198\.51\.100\.7 - - \[[^\]]+\] "GET /private/y HTTP/1\.1" 200 ')
    # From an untrusted peer the header is ignored.
    assert (
        request(address, target="/private/z", headers={"X-Forwarded-For": "198.51.100.7"}).status
        == 403
    )


def test_slowloris_does_not_stop_other_clients(
    front: tuple[EdgeProcess, list[tuple[str, int]]],
) -> None:
    _edge, (address, _) = front
    idle: list[socket.socket] = []
    try:
        for i in range(300):
            sock = socket.create_connection(address, timeout=5)
            sock.sendall(b"GET /slow-%d HTTP/1.1\r\nHost: a\r\nX-Slow: " % i)  # never finished
            idle.append(sock)
        started = time.monotonic()
        response = request(address, target="/normal", timeout=5)
        assert response.status == 200 and response.body == b"uri=/normal\n"
        assert time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()


def test_client_header_timeout_answers_408_and_closes(
    front: tuple[EdgeProcess, list[tuple[str, int]]],
) -> None:
    _edge, (_, slow) = front
    with socket.create_connection(slow, timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        response = read_response(sock)
        assert response.status == 408 and response.header("Connection") == "close"
        assert closed_by_peer(sock)
        assert 0.9 < time.monotonic() - started < 3


# --- logs -------------------------------------------------------------------------------------

COMBINED = re.compile(
    r"^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" "(?P<agent>[^"]*)"$',
    re.MULTILINE,
)


def test_access_log_line_is_nginx_combined_field_by_field(
    front: tuple[EdgeProcess, list[tuple[str, int]]],
) -> None:
    edge, (address, _) = front
    mark = len(edge.log())
    before = time.time()
    response = request(
        address,
        target="/logged?q=1",
        headers={
            "Referer": "http://ref.test/page",
            "User-Agent": 'agent "quoted"/1.0',
            "Authorization": "Basic Ym9iOnB3",  # bob:pw
        },
    )
    edge.wait_for_log(r"/logged\?q=1", start=mark)
    line = next(m for m in COMBINED.finditer(edge.log()[mark:]) if "/logged" in m.group("request"))
    assert line.group("addr") == "127.0.0.1"
    assert line.group("user") == "bob"
    logged = time.mktime(time.strptime(line.group("time")[:-6], "%d/%b/%Y:%H:%M:%S"))
    assert before - 2 <= logged <= time.time() + 1
    assert line.group("request") == "GET /logged?q=1 HTTP/1.1"
    assert line.group("status") == "200"
    assert int(line.group("bytes")) == len(response.body) == len(b"uri=/logged\n")
    assert line.group("referer") == "http://ref.test/page"
    assert line.group("agent") == r"agent \x22quoted\x22/1.0"


def test_error_log_lines_follow_nginx(front: tuple[EdgeProcess, list[tuple[str, int]]]) -> None:
    edge, (address, _) = front
    mark = len(edge.log())
    request(address, target="/private/e", host="Front.Test:1234")
    _log_after(
        edge,
        mark,
        r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#0: \*\d+ access forbidden by rule, "
        r'client: 127\.0\.0\.1, server: front\.test, request: "GET /private/e HTTP/1\.1", '
        r'host: "Front\.Test:1234"',
    )


# --- processes: reload, stop, workers ------------------------------------------------------

RELOADABLE = """
worker_processes: {workers}
error_log: {{level: warn}}
servers:
  - listen: 127.0.0.1:0
    locations:
      - path: /
        return: {{status: 200, body: "{version}\\n"}}
      - path: = /slow
        return: {{status: 200, body: "slow done\\n"}}
        limit_req: {{zone: pace, burst: 5}}
limit_req_zones:
  pace: {{rate: 1r/s}}
"""


def _start(tmp_path: Path, text: str) -> tuple[EdgeProcess, Path]:
    config = write_config(tmp_path, text)
    edge = start_edge(["-c", str(config)], cwd=tmp_path, log_path=tmp_path / "edge.log")
    return edge, config


def test_sighup_reload_under_load_drops_nothing(tmp_path: Path) -> None:
    edge, config = _start(tmp_path, RELOADABLE.format(workers=2, version="v1"))
    try:
        (address,) = edge.ready()
        failures: list[str] = []
        bodies: list[bytes] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    response = request(address, target="/", timeout=5)
                    if response.status != 200:
                        failures.append(f"status {response.status}")
                    bodies.append(response.body)
                except OSError as exc:
                    failures.append(repr(exc))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        # The reload happens under load: the clients are being answered.
        wait_until(lambda: len(bodies) >= 20, timeout=10, what="20 answers", process=edge)
        config.write_text(RELOADABLE.format(workers=2, version="v2"))
        edge.signal(signal.SIGHUP)
        edge.wait_for_log(r"reload complete", timeout=15)
        wait_until(
            lambda: b"v2\n" in bodies[-20:], timeout=10, what="answers from v2", process=edge
        )
        # ... and the load goes on through the new generation while the old one drains.
        seen = len(bodies)
        wait_until(
            lambda: len(bodies) >= seen + 20, timeout=10, what="20 more answers", process=edge
        )
        stop.set()
        for thread in threads:
            thread.join(10)
        assert not failures, failures[:5]
        assert len(bodies) > 50
        assert bodies[-1] == b"v2\n"
        edge.wait_for_log(r"worker process \d+ exited with code 0")
    finally:
        edge.stop()


def test_sighup_with_a_broken_config_is_refused_and_the_old_one_serves(tmp_path: Path) -> None:
    edge, config = _start(tmp_path, RELOADABLE.format(workers=1, version="v1"))
    try:
        (address,) = edge.ready()
        config.write_text(
            RELOADABLE.format(workers=1, version="v1").replace("zone: pace", "zone: nope")
        )
        edge.signal(signal.SIGHUP)
        edge.wait_for_log(
            r"\[emerg\] .*servers\[0\]\.locations\[1\]\.limit_req\.zone: no zone 'nope'"
        )
        edge.wait_for_log(r"reload refused: the new configuration has errors")
        assert request(address).body == b"v1\n"
        assert edge.count(r"spawned worker") == 1
    finally:
        edge.stop()


def test_sigquit_finishes_requests_in_progress_then_exits(tmp_path: Path) -> None:
    edge, _config = _start(tmp_path, RELOADABLE.format(workers=1, version="v1"))
    try:
        (address,) = edge.ready()
        assert request(address, target="/slow").status == 200  # empties the bucket
        with socket.create_connection(address, timeout=10) as sock:
            # Delayed about 1s by limit_req: in progress when SIGQUIT arrives.
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            edge.wait_for_log(r"\[warn\] .*delaying request, .*GET /slow HTTP/1\.1")
            edge.signal(signal.SIGQUIT)
            response = read_response(sock)
            assert response.status == 200 and response.body == b"slow done\n"
            assert response.header("Connection") == "close"
        assert edge.wait(timeout=15) == 0
        assert "graceful stop" in edge.log()
        with pytest.raises(OSError):
            socket.create_connection(address, timeout=1).close()
    finally:
        edge.stop()


def test_two_workers_share_the_port_and_a_killed_worker_is_respawned(tmp_path: Path) -> None:
    text = RELOADABLE.format(workers=2, version="v1").replace(
        "      - path: /\n",
        "      - path: /denied/\n        return: 403\n        access: [deny all]\n      - path: /\n",
    )
    edge, _config = _start(tmp_path, text)
    try:
        (address,) = edge.ready()
        edge.wait_ready(2)
        pids = [int(pid) for pid in re.findall(r"spawned worker \d \(pid (\d+)\)", edge.log())]
        assert len(pids) == 2
        for i in range(60):  # new connections: SO_REUSEPORT spreads them over both sockets
            assert request(address, target=f"/denied/{i}").status == 403
        serving = {
            int(pid) for pid in re.findall(r"\[error\] (\d+)#0: \*\d+ access forbidden", edge.log())
        }
        assert serving == set(pids)
        os.kill(pids[0], signal.SIGKILL)
        edge.wait_for_log(rf"worker process {pids[0]} exited on signal 9")
        edge.wait_ready(3)
        assert request(address).status == 200
    finally:
        edge.stop()


def test_sigusr1_reopens_logs_and_sigterm_stops_fast(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    text = RELOADABLE.format(workers=1, version="v1").replace(
        "servers:", f"access_log: {{path: {access}, format: json}}\nservers:", 1
    )
    edge, _config = _start(tmp_path, text)
    try:
        (address,) = edge.ready()
        assert request(address, target="/before").status == 200
        access.rename(tmp_path / "access.log.1")
        edge.signal(signal.SIGUSR1)
        edge.wait_for_log("reopening logs")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            request(address, target="/after")
            if access.exists() and "/after" in access.read_text():
                break
            time.sleep(0.05)
        assert '"request":"GET /before HTTP/1.1"' in (tmp_path / "access.log.1").read_text()
        assert '"request":"GET /after HTTP/1.1","status":200' in access.read_text()
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" * 3)  # the 2nd and 3rd wait
            edge.wait_for_log(r"\[warn\] .*delaying request, .*GET /slow HTTP/1\.1")
            started = time.monotonic()
            edge.signal(signal.SIGTERM)
            assert edge.wait(timeout=10) == 0
            assert time.monotonic() - started < 3  # did not wait for the delayed requests
        assert "received SIGTERM: fast stop" in edge.log()
    finally:
        edge.stop()
