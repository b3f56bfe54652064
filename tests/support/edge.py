"""Start ``edge`` as a real process on port 0 and talk raw HTTP/1.1 to it.

The edge logs ``listening on http://HOST:PORT`` once per listener (the master
binds them before forking), in config order.  Servers that repeat one
``listen`` share its socket, as in nginx, so tests that need several ports on
port 0 use several loopback addresses (``127.0.0.1:0``, ``127.0.0.3:0``).
Access-log lines go to stdout and error-log lines to stderr; both land in the
one log file.
"""

from __future__ import annotations

import re
import socket
import sys
import time
import weakref
from pathlib import Path

from tests.support.clients import RawResponse, parse_response
from tests.support.processes import REPO, ServerProcess

LISTENING = re.compile(r"listening on https?://(\[?[0-9a-fA-F.:]+\]?):(\d+)")


class EdgeProcess(ServerProcess):
    def addresses(self, count: int = 1, timeout: float = 15.0) -> list[tuple[str, int]]:
        """The first ``count`` listening addresses, once all are logged and a worker is up."""
        deadline = time.monotonic() + timeout
        while True:
            found = LISTENING.findall(self.log())
            if len(found) >= count and self.count(r"spawned worker") >= 1:
                return [(host.strip("[]"), int(port)) for host, port in found[:count]]
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"edge exited ({self.proc.returncode}); log:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"edge did not start listening; log:\n{self.log()}")
            time.sleep(0.02)

    def worker_pids(self) -> list[int]:
        """The pids of the workers spawned so far, in order (``spawned worker N (pid P)``)."""
        return [int(pid) for pid in re.findall(r"spawned worker \d+ \(pid (\d+)\)", self.log())]

    def ready(self, count: int = 1) -> list[tuple[str, int]]:
        """Addresses, after a request has proven a worker accepts on the first one."""
        addresses = self.addresses(count)
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(addresses[0], timeout=2) as sock:
                    sock.sendall(b"HEAD / HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
                    if sock.recv(1):
                        return addresses
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"edge does not answer; log:\n{self.log()}")
            time.sleep(0.05)


def start_edge(
    args: list[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None
) -> EdgeProcess:
    process = EdgeProcess(
        [sys.executable, "-m", "edge", *args], cwd=cwd, log_path=log_path, env=env
    )
    process.env.setdefault("PYTHONPATH", str(REPO))
    process.start()
    return process


def write_config(directory: Path, text: str, name: str = "edge.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


# --- raw HTTP ----------------------------------------------------------------------------


# Bytes read past the end of one response belong to the next (pipelining): keep them
# with the socket they came from.
_LEFTOVER: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def _recv(sock: socket.socket) -> bytes:
    return sock.recv(65536)


def read_response(
    sock: socket.socket, *, head_request: bool = False, timeout: float = 10.0
) -> RawResponse:
    """Read exactly one response from ``sock`` (Content-Length, chunked or close-delimited)."""
    sock.settimeout(timeout)
    buffer = _LEFTOVER.pop(sock, b"")
    while b"\r\n\r\n" not in buffer:
        data = _recv(sock)
        if not data:
            return parse_response(buffer)  # raises NoResponse
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    response = parse_response(head + b"\r\n\r\n")
    length = response.header("Content-Length")
    if head_request or response.status in (204, 304) or response.status < 200:
        body = b""
    elif length is not None:
        while len(rest) < int(length):
            data = _recv(sock)
            if not data:
                break
            rest += data
        body, rest = rest[: int(length)], rest[int(length) :]
    elif (response.header("Transfer-Encoding") or "").lower() == "chunked":
        body, rest = _read_chunked(sock, rest)
    else:
        while True:
            data = _recv(sock)
            if not data:
                break
            rest += data
        body, rest = rest, b""
    if rest:
        _LEFTOVER[sock] = rest
    response.body = body
    response.raw = head + b"\r\n\r\n" + body
    return response


def _read_chunked(sock: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    body = b""
    while True:
        while b"\r\n" not in data:
            data += _recv(sock)
        line, _, data = data.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        while len(data) < size + 2:
            data += _recv(sock)
        body += data[:size]
        data = data[size + 2 :]
        if size == 0:
            return body, data


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server has closed (EOF or reset) within ``timeout``, with nothing more sent."""
    sock.settimeout(timeout)
    if _LEFTOVER.pop(sock, b""):
        return False
    try:
        return not sock.recv(65536)  # more bytes would mean it was not closed after that
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def request(
    address: tuple[str, int],
    method: str = "GET",
    target: str = "/",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    host: str = "localhost",
    timeout: float = 10.0,
) -> RawResponse:
    """One request on a fresh connection (``Connection: close``)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(sock, head_request=method == "HEAD", timeout=timeout)


def exchange_raw(
    address: tuple[str, int], data: bytes, timeout: float = 10.0
) -> tuple[RawResponse, bool]:
    """Send raw bytes; the first response, and whether the server then closed the connection."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        response = read_response(sock, timeout=timeout)
        return response, closed_by_peer(sock)
