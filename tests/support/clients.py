"""Minimal clients that speak to servers the way nginx and browsers do, byte for byte."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import uwsgiproto


@dataclass
class RawResponse:
    status: int
    reason: str
    protocol: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes = field(repr=False, default=b"")

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


class NoResponse(ConnectionError):
    """The server closed the connection without a complete response head."""


def parse_response(raw: bytes) -> RawResponse:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise NoResponse(f"no complete response head in {raw[:200]!r}")
    lines = head.decode("latin-1").split("\r\n")
    protocol, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return RawResponse(int(code), reason, protocol, headers, body, raw)


def recv_all(sock: socket.socket, timeout: float = 30.0) -> bytes:
    sock.settimeout(timeout)
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def uwsgi_vars(
    method: str = "GET", uri: str = "/", body: bytes = b"", **extra: str
) -> dict[str, str | bytes]:
    """The vars nginx's uwsgi_params would send for this request."""
    raw_uri = uri.encode("utf-8")
    path, _, query = raw_uri.partition(b"?")
    from urllib.parse import unquote_to_bytes

    result: dict[str, str | bytes] = {
        "QUERY_STRING": query,
        "REQUEST_METHOD": method,
        "CONTENT_TYPE": extra.pop("CONTENT_TYPE", "application/octet-stream" if body else ""),
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "REQUEST_URI": raw_uri,
        "PATH_INFO": unquote_to_bytes(path),
        "DOCUMENT_ROOT": "/usr/share/nginx/html",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REQUEST_SCHEME": "http",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "SERVER_PORT": "80",
        "SERVER_NAME": "localhost",
        "HTTP_HOST": "localhost",
    }
    result.update(extra)
    return result


def uwsgi_request(
    address: tuple[str, int] | str,
    method: str = "GET",
    uri: str = "/",
    body: bytes = b"",
    **extra: str,
) -> RawResponse:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(address)
        sock.sendall(uwsgiproto.encode_packet(uwsgi_vars(method, uri, body, **extra)) + body)
        return parse_response(recv_all(sock))


def raw_exchange(address: tuple[str, int], data: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes, half-close, and read until the server closes."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(data)
        return recv_all(sock, timeout)
