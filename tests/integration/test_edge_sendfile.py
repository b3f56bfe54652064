"""Zero-copy file bodies under uvloop: ``os.sendfile`` on a dup of the socket.

``/proc/<pid>/io`` cannot tell the copy path from sendfile on Linux (sendfile
adds to ``rchar``/``wchar`` and ``syscr``/``syscw`` as read + write do), so the
proof that the file never passes through Python is the worker's syscalls,
watched with strace: sendfile() calls and no pread64().
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop  # noqa: E402,F401  (a dependency: the test is about its loop)

from tests.support.edge import EdgeProcess, read_response, request, start_edge, write_config
from tests.support.processes import tcp_connections, wait_until

SIZE = 5_000_000


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EdgeProcess, bytes, tuple[str, int]]]:
    directory = tmp_path_factory.mktemp("sendfile")
    www = directory / "www"
    www.mkdir()
    payload = os.urandom(SIZE)
    (www / "big.bin").write_bytes(payload)
    config = write_config(
        directory,
        f"""
error_log: {{level: info}}
worker_processes: 1
servers:
  - listen: 127.0.0.1:0
    send_timeout: 1s
    locations:
      - path: /
        root: {www}
""",
    )
    edge = start_edge(["-c", str(config)], cwd=directory, log_path=directory / "edge.log")
    try:
        (address,) = edge.ready(1)
        yield edge, payload, address
    finally:
        edge.stop()


def worker_pid(edge: EdgeProcess) -> int:
    return int(re.findall(r"spawned worker \d+ \(pid (\d+)\)", edge.log())[-1])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Strace:
    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=pread64,sendfile", "-o", str(out), "-p", str(pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not self._tracing(pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    "strace cannot attach to the edge worker (ptrace not permitted?)", pytrace=False
                )
            time.sleep(0.02)

    @staticmethod
    def _tracing(pid: int) -> bool:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"TracerPid:\s+(\d+)", status).group(1)) != 0  # type: ignore[union-attr]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        return self.out.read_text() if self.out.exists() else ""


def test_full_and_range_bodies_go_out_with_sendfile(
    site: tuple[EdgeProcess, bytes, tuple[str, int]], tmp_path: Path
) -> None:
    edge, payload, address = site
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed (apt-get install strace; .ci/run does)", pytrace=False)
    tracer = Strace(worker_pid(edge), tmp_path / "strace.txt")
    try:
        full = request(address, target="/big.bin")
        ranged = request(address, target="/big.bin", headers={"Range": "bytes=1000-4000999"})
        # Keep-alive with pipelining: two file responses back to back on one connection.
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(
                b"GET /big.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=-70000\r\n\r\n"
                b"GET /big.bin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            first = read_response(sock)
            second = read_response(sock)
    finally:
        calls = tracer.stop()
    assert full.status == 200 and sha(full.body) == sha(payload)
    assert ranged.status == 206
    assert ranged.header("Content-Range") == f"bytes 1000-4000999/{SIZE}"
    assert sha(ranged.body) == sha(payload[1000:4001000])
    assert first.status == 206 and first.body == payload[-70000:]
    assert second.status == 200 and sha(second.body) == sha(payload)
    sent = [int(n) for n in re.findall(r"sendfile\(.*\) = (\d+)", calls)]
    assert sum(sent) == SIZE + 4_000_000 + 70_000 + SIZE
    assert "pread64" not in calls  # the copy path reads the file through pread
    assert f'"GET /big.bin HTTP/1.1" 200 {SIZE} ' in edge.log()
    assert '"GET /big.bin HTTP/1.1" 206 4000000 ' in edge.log()


def test_client_leaving_mid_file_closes_only_that_connection(
    site: tuple[EdgeProcess, bytes, tuple[str, int]],
) -> None:
    edge, payload, address = site
    pid = worker_pid(edge)
    clients = []
    for reset in (False, True):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(address)
        clients.append(sock.getsockname())
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    edge.wait_for_log(r"client closed connection")
    wait_until(
        lambda: not [row for row in tcp_connections(pid) if row.remote in clients],
        timeout=10,
        what="the worker to close both connections the clients left",
        process=edge,
    )
    response = request(address, target="/big.bin")
    assert sha(response.body) == sha(payload)
    assert worker_pid(edge) == pid and os.path.exists(f"/proc/{pid}")
    assert "Traceback" not in edge.log()


def test_slow_reader_is_cut_after_send_timeout(
    site: tuple[EdgeProcess, bytes, tuple[str, int]],
) -> None:
    edge, _, address = site
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: a\r\n\r\n")
    edge.wait_for_log(r"client timed out while sending a file", timeout=10)
    sock.settimeout(10)
    received = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            break
        if not data:
            break
        received += len(data)
    sock.close()
    assert received < SIZE  # cut short, then closed
    assert "Traceback" not in edge.log()
