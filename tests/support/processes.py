"""Start real server processes for integration tests, read what they log, wait for events.

Servers are started on port 0; the bound address is read back from their
log ("listening on uwsgi://127.0.0.1:41234"), so tests never race for ports.
On failure the log is part of the assertion message.

Tests synchronise on events, never on a bare sleep: a log line
(``wait_for_log``), a scoreboard state read from the stats server
(``wait_for_requests_in_flight``), or what the kernel's TCP table says a
process holds and has read (``tcp_connections``, ``wait_until_read``).  Every wait goes through ``wait_until``, which has a
deadline and fails at once, with the log, when the server has exited.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]

T = TypeVar("T")

# /proc/net/tcp's "st" column (include/net/tcp_states.h).
TCP_ESTABLISHED = "01"
_TCP_LISTEN = "0A"


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    process: ServerProcess | None = None,
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    Fails after ``timeout`` seconds, or as soon as ``process`` has exited (one
    last look first: the event may be the last thing it did), naming ``what``
    was awaited and showing the process's log.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if process is not None and process.proc is not None and process.proc.poll() is not None:
            result = condition()
            if result:
                return result
            raise AssertionError(
                f"server exited ({process.proc.returncode}) before {what}; log:\n{process.log()}"
            )
        if time.monotonic() > deadline:
            log = f"; log:\n{process.log()}" if process is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{log}")
        time.sleep(interval)


@dataclass(frozen=True)
class TcpSocket:
    """One row of the kernel's TCP socket table (/proc/net/tcp and tcp6)."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str  # hex, as include/net/tcp_states.h numbers them: 01 ESTABLISHED, 0A LISTEN
    unacknowledged: int  # bytes sent that the peer's kernel has not acknowledged yet
    unread: int  # bytes received that the application has not read yet
    inode: str


def _address(hex_address: str) -> tuple[str, int]:
    # Each 32-bit word of the address is printed in host byte order, the port in network order.
    host, port = hex_address.split(":")
    raw = b"".join(struct.pack("=I", int(host[i : i + 8], 16)) for i in range(0, len(host), 8))
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    text = socket.inet_ntop(family, raw)
    if text.startswith("::ffff:") and "." in text:
        text = text[len("::ffff:") :]  # an IPv4 peer of a dual-stack socket
    return text, int(port, 16)


def tcp_sockets() -> list[TcpSocket]:
    """Every TCP socket in this network namespace (the servers under test share it)."""
    rows = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/self/net/{table}") as lines:
            next(lines)  # the header
            for line in lines:
                fields = line.split()
                unacknowledged, unread = (int(queue, 16) for queue in fields[4].split(":"))
                rows.append(
                    TcpSocket(
                        _address(fields[1]),
                        _address(fields[2]),
                        fields[3],
                        unacknowledged,
                        unread,
                        fields[9],
                    )
                )
    return rows


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def tcp_connections(pid: int) -> list[TcpSocket]:
    """The TCP sockets (other than listeners) process ``pid`` holds open.

    A server that has closed every client connection holds none, whatever
    state the peers' ends are in.
    """
    inodes = _socket_inodes(pid)
    return [row for row in tcp_sockets() if row.inode in inodes and row.state != _TCP_LISTEN]


def wait_until_read(
    sock: socket.socket,
    pids: Iterable[int],
    *,
    timeout: float = 10.0,
    process: ServerProcess | None = None,
) -> None:
    """Wait until one of ``pids`` has accepted ``sock``'s connection and read all that was sent.

    The kernel says so: every byte sent on ``sock`` is acknowledged by the
    server's end, and that end, held by a server process, has nothing unread.
    What the server does with the bytes next happens in the same turn of its
    loop, with no further I/O.
    """
    client = sock.getsockname()[:2]
    pids = list(pids)

    def read() -> bool:
        rows = tcp_sockets()
        sent = [row for row in rows if row.local == client]
        inodes = set().union(*(_socket_inodes(pid) for pid in pids))
        served = [row for row in rows if row.remote == client and row.inode in inodes]
        return bool(sent and served) and not (sent[0].unacknowledged or served[0].unread)

    wait_until(
        read, timeout=timeout, what=f"pids {pids} to read what {client} sent", process=process
    )


def read_stats(address: tuple[str, int]) -> dict[str, Any]:
    """One document from a uWSGI-style stats server (it writes JSON, then closes)."""
    with socket.create_connection(address, timeout=5) as sock:
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    document: dict[str, Any] = json.loads(b"".join(chunks))
    return document


class ServerProcess:
    def __init__(
        self, argv: list[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(
        self, pattern: str, timeout: float = 15.0, start: int = 0, path: Path | None = None
    ) -> re.Match[str]:
        """Wait until the log (from character ``start``) matches ``pattern``.

        ``path`` reads another file the server writes (``--logto``) instead of its output.
        """
        regex = re.compile(pattern)

        def search() -> re.Match[str] | None:
            if path is None:
                return regex.search(self.log()[start:])
            try:
                return regex.search(path.read_text(errors="replace")[start:])
            except FileNotFoundError:
                return None

        where = "" if path is None else f" in {path}"
        return wait_until(search, timeout=timeout, what=f"{pattern!r}{where}", process=self)

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def address(self, scheme: str = "uwsgi") -> tuple[str, int]:
        match = self.wait_for_log(rf"listening on {scheme}://(\[?[0-9a-f.:]+\]?):(\d+)")
        return match.group(1).strip("[]"), int(match.group(2))

    def wait_ready(self, workers: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``workers`` workers have been spawned.

        Connections made from then on wait in the listen backlog until a worker accepts.
        """
        wait_until(
            lambda: self.count(r"spawned worker") >= workers,
            timeout=timeout,
            what=f"{workers} spawned worker(s)",
            process=self,
        )

    def stats_address(self) -> tuple[str, int]:
        match = self.wait_for_log(r"stats server on ([\d.]+):(\d+)")
        return match.group(1), int(match.group(2))

    def stats(self) -> dict[str, Any]:
        """The stats server's JSON now (the server runs with ``--stats 127.0.0.1:0``)."""
        return read_stats(self.stats_address())

    def wait_for_requests_in_flight(
        self, request_line: str, count: int = 1, timeout: float = 15.0
    ) -> dict[str, Any]:
        """Wait until ``count`` cores are inside a request whose line contains ``request_line``.

        Reads the scoreboard through the stats server: a core is in a request
        from the moment the app is called until the response has been sent.
        Returns that stats document.
        """

        def in_flight() -> dict[str, Any] | None:
            stats = self.stats()
            busy = [
                core
                for worker in stats["workers"]
                for core in worker["cores"]
                if core["in_request"] and any(request_line in line for line in core["vars"])
            ]
            return stats if len(busy) >= count else None

        return wait_until(
            in_flight,
            timeout=timeout,
            what=f"{count} request(s) {request_line!r} in flight (stats server)",
            process=self,
        )

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def appserver(
    args: list[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None
) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "appserver", *args], cwd=cwd, log_path=log_path, env=env
    ).start()
