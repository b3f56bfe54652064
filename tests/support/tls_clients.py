"""Real TLS clients for the edge's ``ssl`` listens: curl, ``openssl s_client``, and a
Python ``ssl`` socket carrying the ``h2`` library's client side (for the HTTP/2 attacks
that no command-line client will send)."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from tests.support.edge import EdgeProcess

CURL = shutil.which("curl") or "/usr/bin/curl"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


@dataclass
class CurlResult:
    status: int
    version: str  # "1.1" or "2"
    headers: dict[str, str]
    body: bytes


def curl(
    url: str,
    ca: Path,
    *args: str,
    http: str = "--http2",
    resolve: str | None = None,
    timeout: float = 30.0,
) -> CurlResult:
    """``curl`` with the test CA trusted; the response's status, version, headers, body."""
    command = [
        CURL, "-sS", http, "--cacert", str(ca), "--max-time", str(timeout),
        "-D", "-", "-o", "/dev/stdout", "-w", "\n%{http_version}", *args,
    ]  # fmt: skip
    if resolve is not None:
        command += ["--resolve", resolve]
    result = subprocess.run([*command, url], capture_output=True, timeout=timeout + 10, check=False)
    if result.returncode != 0:
        raise AssertionError(f"curl {url} failed ({result.returncode}): {result.stderr!r}")
    out, _, version = result.stdout.rpartition(b"\n")
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return CurlResult(status, version.decode(), headers, body)


def s_client(address: tuple[str, int], *args: str, send: bytes = b"") -> str:
    """``openssl s_client -connect`` with ``args``; its whole output (text)."""
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"{address[0]}:{address[1]}", *args],
        input=send,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return (result.stdout + result.stderr).decode("latin-1")


def client_context(ca: Path, alpn: tuple[str, ...] = ("h2",)) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(list(alpn))
    return context


def wait_tls_ready(edge: EdgeProcess, ca: Path, count: int = 1) -> list[tuple[str, int]]:
    """The first ``count`` listen addresses, once a TLS handshake on the first succeeds."""
    addresses = edge.addresses(count)
    context = client_context(ca, ("http/1.1",))
    context.check_hostname = False
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(addresses[0], timeout=2) as raw:
                with context.wrap_socket(raw) as sock:
                    sock.sendall(b"HEAD / HTTP/1.1\r\nHost: ready\r\nConnection: close\r\n\r\n")
                    if sock.recv(1):
                        return addresses
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"edge does not answer over TLS; log:\n{edge.log()}")
        time.sleep(0.05)


@dataclass
class H2Client:
    """The ``h2`` library's client over a real TLS socket: frames as a test wants them."""

    sock: ssl.SSLSocket
    conn: h2.connection.H2Connection
    events: list[h2.events.Event] = field(default_factory=list)
    closed: bool = False

    @classmethod
    def connect(
        cls,
        address: tuple[str, int],
        ca: Path,
        *,
        validate: bool = True,
        settings: dict[int, int] | None = None,
    ) -> H2Client:
        context = client_context(ca)
        context.check_hostname = False
        raw = socket.create_connection(address, timeout=10)
        sock = context.wrap_socket(raw)
        assert sock.selected_alpn_protocol() == "h2"
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        if settings:
            conn.update_settings(settings)
        client = cls(sock, conn)
        client.flush()
        return client

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        path: str,
        *,
        host: str = "localhost",
        end: bool = True,
        method: str = "GET",
        extra: tuple[tuple[bytes, bytes], ...] = (),
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", host.encode()),
            (b":path", path.encode()),
            *extra,
        ]
        self.conn.send_headers(stream_id, headers, end_stream=end)
        self.flush()
        return stream_id

    def read(self, timeout: float = 10.0) -> list[h2.events.Event]:
        """Whatever arrives within ``timeout`` seconds of silence... once: one recv."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return []
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return []
        self.events.extend(events)
        self.flush()
        return events

    def until(
        self, predicate: object, timeout: float = 15.0, what: str = "an event"
    ) -> h2.events.Event | None:
        """Read until an event matching ``predicate`` (a callable) arrives, or the end."""
        check = predicate if callable(predicate) else None
        assert check is not None
        for event in self.events:
            if check(event):
                return event
        deadline = time.monotonic() + timeout
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; got {self.events!r}")
            for event in self.read(remaining):
                if check(event):
                    return event
        return None

    def response(self, stream_id: int, timeout: float = 15.0) -> tuple[int, bytes]:
        """The status and whole body of ``stream_id``'s response."""
        status = 0
        body = b""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                seen += 1
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers or ())[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data or b""
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length or 0, stream_id
                    )
                    self.flush()
                elif isinstance(event, h2.events.StreamEnded):
                    return status, body
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream {stream_id} was reset: {event!r}")
            if self.closed or time.monotonic() > deadline:
                raise AssertionError(f"no complete response on stream {stream_id}: {self.events}")
            self.read(max(0.1, deadline - time.monotonic()))

    def ping(self, timeout: float = 15.0) -> None:
        """A PING answered: the server has read (and handled) everything sent before it."""
        payload = os.urandom(8)
        self.conn.ping(payload)
        self.flush()
        event = self.until(
            lambda e: isinstance(e, h2.events.PingAckReceived) and e.ping_data == payload,
            timeout,
            what="the PING ack",
        )
        if event is None:
            raise AssertionError(f"the connection closed before the PING ack: {self.events}")

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        event = self.until(lambda e: isinstance(e, h2.events.ConnectionTerminated), what="GOAWAY")
        return event if isinstance(event, h2.events.ConnectionTerminated) else None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
