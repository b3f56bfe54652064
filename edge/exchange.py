"""The contract between the edge's HTTP front (protocol.py) and its handlers.

One ``Exchange`` per request: what the client asked (``Request``), a way to
read its body (``RequestBody``) and a way to answer (``ResponseSink``).  The
front builds the exchange, routes it to a location and awaits
``handler.handle(exchange)``; a handler never touches the client's transport
directly, so flow control, timeouts, keep-alive framing and the access log
stay in one place (the front).

Handlers signal failure by raising ``EdgeError`` (or a subclass) *before*
they start the response: the front turns it into the status it carries, an
error-log line at its level, and a short body.  After the head is sent, a
failure can only cut the connection: raise ``ResponseAborted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import os

    from edge.config.schema import Endpoint, Location, Server


class EdgeError(Exception):
    """A request that ends with an error status; the message goes to the error log."""

    status: int = 500
    level: str = "error"  # nginx error-log level: "error", "warn", "info"
    headers: tuple[tuple[bytes, bytes], ...] = ()  # for the error page (405's Allow)

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        level: str | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if level is not None:
            self.level = level
        if headers:
            self.headers = headers


class UpstreamError(EdgeError):
    """A backend failed (connect refused, reset, bad response): 502.  Names the peer and the phase."""

    status = 502


class UpstreamTimeout(EdgeError):
    """A backend timed out (connect, send or read): 504."""

    status = 504


class ClientError(EdgeError):
    """The client's fault (bad body, too large, forbidden): status 4xx, logged at info."""

    status = 400
    level = "info"


class ResponseAborted(Exception):
    """The response was already started and cannot be completed: the front closes the connection."""


class ClientGone(Exception):
    """The client closed the connection (nginx's 499)."""


@dataclass(slots=True)
class UpstreamReport:
    """A proxied request's upstream exchange as the access and error logs tell it.

    Filled in by the proxy as the attempts go; the logs format it (nginx's
    ``$upstream_addr``, ``$upstream_status``, ``$upstream_*_time`` and the
    error log's ``upstream: "uwsgi://10.0.0.5:3031"``).  Times are seconds,
    None for a phase not reached.
    """

    scheme: str  # "uwsgi" or "http"
    name: str  # the upstream's name: the error log names it before a peer is chosen
    peers: list[Endpoint] = field(default_factory=list)  # every peer tried, in order
    status: int | None = None  # the last attempt's (502/504 for one that failed)
    connect_time: float | None = None
    header_time: float | None = None
    response_time: float | None = None
    cache_status: str | None = None  # "HIT" / "MISS" when the location has a microcache

    @property
    def addr(self) -> str:
        """nginx's ``$upstream_addr``: ``10.0.0.5:3031, 10.0.0.6:3031``."""
        return ", ".join(str(peer) for peer in self.peers)

    @property
    def url(self) -> str:
        """The error log's ``upstream``: the last peer tried, else the upstream's name."""
        return f"{self.scheme}://{self.peers[-1] if self.peers else self.name}"


@dataclass(slots=True)
class Request:
    """The request as the handlers see it.  Header names are lower-case bytes, as parsed."""

    method: str
    target: bytes  # raw request-target, e.g. b"/a%20b?x=1"
    path: str  # percent-decoded, dot-segments removed (edge.routing.normalize_uri); UTF-8 text
    raw_path: bytes  # the path part of target, still percent-encoded
    query: bytes  # without the "?"
    http_version: str  # "1.0" or "1.1"
    headers: list[tuple[bytes, bytes]]
    host: str  # Host header without port, or the server's name; lower-case
    scheme: str  # "http"
    client_ip: str  # after real_ip (trusted proxies); what limits and logs use
    client_port: int
    peer_ip: str  # the TCP peer
    server_addr: str  # local address of the connection
    server_port: int
    server: Server
    location: Location
    content_length: int | None  # None when chunked or no body
    chunked: bool
    keep_alive: bool  # the client asked for it (the front decides in the end)
    started: float  # time.time() at the head's arrival (for logs)
    request_line: str  # 'GET /x HTTP/1.1', for the access log
    upstream: UpstreamReport | None = None  # the proxy's account, for the logs
    logged_status: int | None = None  # what the access log says when no response was sent (444)
    # $request_id once something asked for it (edge.variables.request_id makes it);
    # with trusts_request_id a sane incoming X-Request-ID is taken instead of a new one.
    request_id: str | None = None
    trusts_request_id: bool = False

    def header(self, name: bytes) -> bytes | None:
        """First value of a header (name lower-case bytes), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class RequestBody(Protocol):
    """The request body, already de-chunked, bounded by client_max_body_size."""

    @property
    def length(self) -> int | None:
        """Content-Length, or None when chunked (the front may buffer to learn it)."""

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Next piece of the body; b"" at the end.  Raises ClientError (413/400) or ClientGone."""

    async def read_all(
        self, spool_limit: int = 1 << 20
    ) -> tuple[int, list[bytes] | os.PathLike[str]]:
        """Read the whole body (for uwsgi upstreams, which need CONTENT_LENGTH up front).

        Returns (length, chunks in memory) or (length, path of a temp file) past spool_limit.
        """


class ResponseSink(Protocol):
    """How a handler answers.  Headers are (bytes, bytes) pairs as they go on the wire."""

    @property
    def started(self) -> bool:
        """True once the head has been sent (an EdgeError can no longer change the status)."""

    async def send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> None:
        """Send status line and headers.  The front adds Date, Server, Connection and,
        when neither Content-Length nor Transfer-Encoding is present, frames the body
        (chunked for HTTP/1.1 keep-alive, else close-delimited)."""

    async def send(self, data: bytes) -> None:
        """Send body bytes, waiting for the client to drain (send_timeout)."""

    async def sendfile(self, file: object, offset: int, count: int) -> None:
        """Send part of an open file with zero copy where the loop allows it."""

    async def end(self) -> None:
        """The response is complete (the front finishes chunked framing, logs, and keeps or closes)."""


class SinkFilter:
    """A ``ResponseSink`` wrapped around another one; it passes everything through.

    Filters (gzip, add_header / error_page statuses) subclass it and override only
    what they change.  What the front asks of its own writer (``switch_protocols``,
    ``finished``) reaches the innermost sink.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: ResponseSink) -> None:
        self._inner = inner

    @property
    def started(self) -> bool:
        return self._inner.started

    @property
    def finished(self) -> bool:
        return bool(getattr(self._inner, "finished", False))

    async def send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> None:
        await self._inner.send_head(status, headers, reason)

    async def send(self, data: bytes) -> None:
        await self._inner.send(data)

    async def sendfile(self, file: object, offset: int, count: int) -> None:
        await self._inner.sendfile(file, offset, count)

    async def end(self) -> None:
        await self._inner.end()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@dataclass(slots=True)
class Exchange:
    request: Request
    body: RequestBody
    response: ResponseSink


class Handler(Protocol):
    async def handle(self, exchange: Exchange) -> None: ...
