"""The reverse proxy: a request to a named upstream over uwsgi or HTTP/1.1, relayed back.

Theory of operation
-------------------
One ``handle`` call per request runs attempts until one yields a response
head, then relays that response streaming:

    cache lookup -> [pick peer -> acquire -> connect -> send -> read head]* -> relay -> release

*Attempts.*  Each attempt asks the balancer for a peer not yet tried.  A
failure is classified as nginx does (``ngx_http_upstream_next``): ``error``
(connect refused, reset, premature close), ``timeout`` (per phase, with
``asyncio.timeout``), ``invalid_header`` (a head we cannot parse), or an
``http_5xx`` status listed in ``next_upstream``.  The next peer is tried when
the condition is listed in ``next_upstream``, ``next_upstream_tries`` and
``next_upstream_timeout`` allow, the body can be sent again, and either
nothing was sent yet or the method is idempotent (``POST``, ``LOCK`` and
``PATCH`` are not, unless ``non_idempotent`` is listed).  Failed peers are
reported to the balancer (passive health: ``max_fails`` within
``fail_timeout``); a 403/404/429 status is not a peer failure.

*Error log.*  Every failed attempt is one line in nginx's words, naming the
phase and the cause, ``(hint: ...)`` where we can tell what to change
(DESIGN pain point #1), then nginx's context (``client``, ``server``,
``request``, ``upstream`` with the peer address, ``host``).  Attempts that
were retried are logged here, with that context.  The failure that ends the
request is raised as ``UpstreamError`` (502) or ``UpstreamTimeout`` (504)
whose message is the line without the context: the front logs it and adds
the context itself, reading the peer from the request's ``UpstreamReport``.

*Bodies.*  uwsgi needs ``CONTENT_LENGTH`` up front, so a chunked body is
read whole first (``read_all``, spooled to disk past 1 MiB) as nginx does; a
Content-Length body streams.  HTTP upstreams get a chunked body re-chunked
as it arrives.  Bodies up to ``REPLAY_LIMIT`` are remembered while they
stream so that a retry can send them again; past it, once body bytes have
gone to a peer, that request is not retried.

*Keep-alive (HTTP).*  Connections come from the upstream's pool; a request
that fails on a reused connection before any response byte is retried once
on a fresh connection to the same peer when it may be (pain point #9): the
backend most likely closed the idle connection as we reused it.

*Relay.*  The head is sent with hop-by-hop headers and the ones nginx hides
(``Date``, ``Server``, ``X-Accel-*``) removed; ``Content-Length`` passes
through, otherwise the front frames the body.  Body bytes go out as they
arrive, each ``send`` waiting for the client to drain, so a slow client
pauses the upstream read rather than growing memory.  A failure after the
head was sent can only cut the connection (``ResponseAborted``).  When the
client goes away, the upstream connection is dropped, unless
``ignore_client_abort``: then the upstream response is read to its end (and
the request survives the front cancelling it).

*Upgrades.*  A 101 is accepted only from an HTTP upstream and only when the
client's request has an ``Upgrade`` header (nginx's rule; the config passes
``Upgrade``/``Connection`` with ``params``); the connection then becomes a
byte tunnel (``edge.tunnel``) and is never pooled.  A 101 otherwise is a 502.

*Intercepted errors.*  With ``intercept_errors``, a head with a status >= 300
that has an ``error_page`` is dropped (its connection closed) and raised as
``InterceptedError``, which the pipeline answers with the error page.

What the logs need goes in ``request.upstream``, an ``UpstreamReport``: every
peer tried (nginx's ``$upstream_addr``), the last attempt's status and
connect, header and response times (seconds), and the cache status.  The
error log's ``upstream: "uwsgi://10.0.0.5:3031"`` is the last peer tried.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
from dataclasses import dataclass
from typing import BinaryIO, Final, Literal, NoReturn

from edge.cache import CacheCollector, CachedResponse
from edge.config.schema import Location, ProxyHandler
from edge.errorlog import request_context
from edge.exchange import (
    ClientError,
    ClientGone,
    Exchange,
    Request,
    RequestBody,
    ResponseAborted,
    UpstreamError,
    UpstreamReport,
    UpstreamTimeout,
)
from edge.response_rules import InterceptedError, error_page_for
from edge.tunnel import relay
from edge.upstream.balancer import Peer
from edge.upstream.connection import UpstreamConnection, open_connection
from edge.upstream.pool import UpstreamGroup, UpstreamRuntime
from edge.variables import compile_getter, compile_template, expand, forwarded_for, request_uri
from httpproto.parser import NEED_DATA, Data
from httpproto.response_parser import (
    IncompleteResponse,
    ResponseError,
    ResponseHead,
    ResponseParser,
)
from uwsgiproto.errors import VarsTooLarge
from uwsgiproto.params import UWSGI_PARAMS, Param, VarsEncoder, merge_params

# Request bodies up to this size are kept while they stream, so a retry can resend them.
REPLAY_LIMIT: Final = 64 * 1024
READ_SIZE: Final = 64 * 1024
# The uwsgi keep-alive extension (docs/uwsgi-keepalive.md): the var we offer it with,
# and the response header an app server accepts it with.
KEEPALIVE_VAR: Final = "WSGISTACK_KEEPALIVE"
KEEPALIVE_VERSION: Final = "1"
KEEPALIVE_HEADER: Final = b"wsgistack-keepalive"
# nginx's default uWSGI buffer-size: a bigger vars block is the usual cause of a
# silent close ("invalid request block size" on the app server's side).
UWSGI_DEFAULT_BUFFER_SIZE: Final = 4096

# RFC 9110 §7.6.1 hop-by-hop fields, plus the proxy ones; names listed in
REQUEST_ID_VAR: Final = "HTTP_X_REQUEST_ID"  # docs/monitoring.md: the request-ID contract

# Connection are hop-by-hop too.  "proxy" alone is the httpoxy header (HTTP_PROXY).
_HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Response fields nginx hides by default (proxy_hide_header / uwsgi_hide_header):
# the front sets its own Date and Server; X-Accel-* are instructions for nginx.
_HIDDEN_RESPONSE: Final = frozenset(
    {
        b"date",
        b"server",
        b"x-pad",
        b"x-accel-expires",
        b"x-accel-redirect",
        b"x-accel-limit-rate",
        b"x-accel-buffering",
        b"x-accel-charset",
        b"wsgistack-keepalive",  # our app server's answer to the keep-alive offer
    }
)
# Request fields the HTTP proxy sets itself rather than forwarding.
_SET_BY_HTTP_PROXY: Final = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"expect",
        b"x-real-ip",
        b"x-forwarded-for",
        b"x-forwarded-proto",
    }
)
# nginx's ngx_http_upstream_next: these are not safe to send twice.
_NON_IDEMPOTENT: Final = frozenset({"POST", "LOCK", "PATCH"})
# Statuses that count as a peer failure when listed in next_upstream (not 403/404/429).
_FAILURE_STATUSES: Final = frozenset({500, 502, 503, 504})

Phase = Literal["connect", "send", "header", "body"]
_PHASE_TEXT: Final[dict[str, str]] = {
    "connect": "while connecting to upstream",
    "send": "while sending request to upstream",
    "header": "while reading response header from upstream",
    "body": "while reading response body from upstream",
}
_KEEP_ALIVE_TIMEOUT: Final = re.compile(rb"timeout\s*=\s*(\d+)")


# --- request bodies ---------------------------------------------------------------------


class _Body:
    """The request body as the attempts see it: rewind, then pull chunks until b"".

    The base class is the empty body; ``length`` is 0 for ``Content-Length: 0``
    and None when the request has no body at all.
    """

    def __init__(self, length: int | None = None) -> None:
        self.length = length  # bytes to send; None with ``chunked``: re-chunked as it comes
        self.started = False  # some of it has been read from the client

    @property
    def replayable(self) -> bool:
        """It can be sent again from its start."""
        return True

    def rewind(self) -> None:
        pass

    async def next_chunk(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


class _StreamedBody(_Body):
    """A body read from the client as it is sent, remembered while it is small."""

    def __init__(self, body: RequestBody, length: int | None) -> None:
        super().__init__(length)
        self._body = body
        self._buffer: list[bytes] | None = []
        self._buffered = 0
        self._position = 0
        self._done = False

    @property
    def replayable(self) -> bool:
        return self._buffer is not None

    def rewind(self) -> None:
        self._position = 0

    async def next_chunk(self) -> bytes:
        buffer = self._buffer
        if buffer is not None and self._position < len(buffer):
            chunk = buffer[self._position]
            self._position += 1
            return chunk
        if self._done:
            return b""
        data = await self._body.read(READ_SIZE)
        if not data:
            self._done = True
            return b""
        self.started = True
        if buffer is not None:
            if self._buffered + len(data) <= REPLAY_LIMIT:
                buffer.append(data)
                self._buffered += len(data)
                self._position += 1
            else:
                self._buffer = None  # too big to keep: this body cannot be sent twice
        return data


class _BufferedBody(_Body):
    """A body read whole before the first attempt (chunked, for uwsgi): always replayable."""

    def __init__(self, length: int, data: list[bytes] | os.PathLike[str]) -> None:
        super().__init__(length)
        self.started = True
        self._chunks = data if isinstance(data, list) else None
        self._path = None if isinstance(data, list) else data
        self._file: BinaryIO | None = None
        self._position = 0

    def rewind(self) -> None:
        self._position = 0
        if self._file is not None:
            self._file.seek(0)

    async def next_chunk(self) -> bytes:
        if self._chunks is not None:
            if self._position >= len(self._chunks):
                return b""
            chunk = self._chunks[self._position]
            self._position += 1
            return chunk
        # A spooled body: file reads go to the executor, as static files do.
        loop = asyncio.get_running_loop()
        if self._file is None:
            assert self._path is not None
            self._file = await loop.run_in_executor(None, _open_binary, self._path)
        return await loop.run_in_executor(None, self._file.read, 256 * 1024)

    def close(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            file.close()


def _open_binary(path: os.PathLike[str]) -> BinaryIO:
    return open(path, "rb")


# --- attempts ------------------------------------------------------------------------


class _Failure(Exception):
    """One failed attempt, classified the way next_upstream needs."""

    def __init__(
        self,
        kind: str,
        phase: Phase,
        cause: str,
        *,
        request_sent: bool,
        stale: bool = False,
        hint: str = "",
    ) -> None:
        super().__init__(cause)
        self.kind = kind  # "error" | "timeout" | "invalid_header"
        self.phase = phase
        self.cause = cause
        self.request_sent = request_sent
        self.stale = stale  # failed on a reused keep-alive connection before any response byte
        self.hint = hint

    @property
    def status(self) -> int:
        return 504 if self.kind == "timeout" else 502


@dataclass(slots=True)
class _Response:
    """An attempt that produced a response head; the connection is positioned at the body."""

    peer: Peer
    connection: UpstreamConnection
    parser: ResponseParser
    head: ResponseHead
    started: float  # loop time when the attempt began


def _errno_text(error: OSError) -> str:
    number = error.errno
    if number is None:
        return str(error) or type(error).__name__
    # asyncio rewrites strerror ("Connect call failed ..."): use the system's words.
    text = os.strerror(number) if number > 0 else (error.strerror or str(error))
    return f"{number}: {text}"


_TIMED_OUT: Final = f"{errno.ETIMEDOUT}: {os.strerror(errno.ETIMEDOUT)}"


class ProxyHandlerImpl:
    """The ``proxy:`` handler of one location."""

    __slots__ = (
        "location",
        "settings",
        "runtime",
        "_uwsgi_getters",
        "_uwsgi_vars",
        "_http_params",
        "_http_param_names",
        "_host",
        "_scheme",
        "_pooled",
        "_cache",
    )

    def __init__(self, location: Location, runtime: UpstreamRuntime) -> None:
        handler = location.handler
        if not isinstance(handler, ProxyHandler):
            raise TypeError(f"location {location} is not a proxy location")
        self.location = location
        self.settings: ProxyHandler = handler
        self.runtime = runtime
        configured = [Param(p.name, p.value, p.if_not_empty) for p in handler.params]
        # Connections are kept when the upstream keeps any: HTTP keep-alive, or for
        # uwsgi the WSGISTACK_KEEPALIVE offer, which an app server may accept.
        try:
            self._pooled = runtime.config.upstream(handler.upstream).keepalive > 0
        except KeyError:
            self._pooled = False  # answered 502 per request: no upstream of that name
        if self._pooled and handler.protocol == "uwsgi":
            configured.append(Param(KEEPALIVE_VAR, KEEPALIVE_VERSION))
        # request_id.to_upstream: the ID goes as the uwsgi var or the header, replacing
        # what the client sent (which $request_id took when trust_incoming is on).
        passes_id = runtime.config.request_id.to_upstream
        configured_names = {p.name.upper() for p in handler.params}
        if passes_id and REQUEST_ID_VAR not in configured_names:
            configured.append(Param(REQUEST_ID_VAR, "$request_id"))
        params = merge_params(UWSGI_PARAMS, configured)
        self._uwsgi_getters = tuple(compile_getter(p.value) for p in params)
        self._uwsgi_vars = VarsEncoder(
            [(p.name, p.if_not_empty) for p in params], handler.modifier1
        )
        # For HTTP upstreams a param is a request header (nginx proxy_set_header).
        http_params = [(p.name, p.value) for p in handler.params]
        if passes_id and not any(name.lower() == "x-request-id" for name, _ in http_params):
            http_params.append(("X-Request-ID", "$request_id"))
        self._http_params = tuple(
            (name.encode("latin-1"), compile_template(value)) for name, value in http_params
        )
        self._http_param_names = frozenset(
            name.lower().encode("latin-1") for name, _ in http_params
        )
        self._host = compile_template(handler.host_header)
        self._scheme = handler.protocol
        self._cache = runtime.cache_for(location)

    # -- entry point --------------------------------------------------------------------

    async def handle(self, exchange: Exchange) -> None:
        if not self.settings.ignore_client_abort:
            await self._proxy(exchange)
            return
        # The front may cancel us when the client disconnects; with
        # ignore_client_abort the upstream exchange must run to its end anyway.
        task = asyncio.ensure_future(self._proxy(exchange))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self.runtime.keep_task(task)
            raise

    async def _proxy(self, exchange: Exchange) -> None:
        request = exchange.request
        report = request.upstream = UpstreamReport(self._scheme, self.settings.upstream)
        cache = self._cache
        upgrade = request.header(b"upgrade") is not None
        if cache is not None and request.method in ("GET", "HEAD") and not upgrade:
            hit = cache.lookup(request)
            report.cache_status = "HIT" if hit is not None else "MISS"
            if hit is not None:
                await self._send_cached(exchange, hit)
                return
        try:
            group = self.runtime.group(self.settings.upstream)
        except KeyError:
            raise UpstreamError(f'no upstream named "{self.settings.upstream}"') from None
        body = await self._body(exchange)
        response: _Response | None = None
        tried: list[Peer] = []
        try:
            response = await self._attempts(exchange, report, group, body, tried)
            status = response.head.status
            if status == 101:
                await self._tunnel(exchange, report, response)
            elif (
                status >= 300
                and self.settings.intercept_errors
                and error_page_for(request, status) is not None
            ):
                # proxy_intercept_errors: the error page replaces the upstream's answer.
                self._finish_timing(report, response)
                response.connection.abort()
                raise InterceptedError(
                    f"upstream returned {status}, intercepted by error_page", status=status
                )
            else:
                await self._relay(exchange, report, group, response)
        finally:
            body.close()
            if response is not None:
                group.balancer.release(response.peer)
            if tried:
                report.peers = [peer.endpoint for peer in tried]

    async def _body(self, exchange: Exchange) -> _Body:
        request = exchange.request
        if request.chunked:
            if self._scheme == "uwsgi":
                # uwsgi has no chunked framing: learn the length first (nginx does the same).
                length, data = await exchange.body.read_all()
                request.content_length = length  # nginx's $content_length, once it is known
                return _BufferedBody(length, data)
            return _StreamedBody(exchange.body, None)
        if request.content_length:
            return _StreamedBody(exchange.body, request.content_length)
        return _Body(request.content_length)  # 0 for "Content-Length: 0", else None

    # -- attempts --------------------------------------------------------------------------

    async def _attempts(
        self,
        exchange: Exchange,
        report: UpstreamReport,
        group: UpstreamGroup,
        body: _Body,
        tried: list[Peer],
    ) -> _Response:
        """Try peers until one answers with a head we relay; the peer stays acquired."""
        request = exchange.request
        settings = self.settings
        balancer = group.balancer
        clock = self.runtime.clock
        started = clock()
        packet = self._uwsgi_packet(request) if self._scheme == "uwsgi" else b""
        peer = balancer.pick(started, request.client_ip, tried)
        if peer is None:
            raise UpstreamError(
                f'no live upstreams while connecting to upstream "{group.name}"'
                " (hint: every server of the upstream is down or failed within its"
                " fail_timeout; the lines before this one say why)"
            )
        fresh_retry_used = False
        fresh = False
        while True:
            tried.append(peer)
            balancer.acquire(peer)
            attempt_started = clock()
            try:
                response = await self._attempt(
                    exchange, report, group, peer, body, packet, fresh, attempt_started
                )
            except _Failure as failure:
                balancer.release(peer)
                report.status = failure.status
                if failure.stale and not fresh_retry_used and self._may_resend(request, body):
                    # The backend closed a kept-alive connection as we reused it: not
                    # the peer's fault, and nothing reached the app.  Once, same peer.
                    fresh_retry_used = True
                    fresh = True
                    tried.pop()
                    self.runtime.log(
                        "info",
                        f"{failure.cause} {_PHASE_TEXT[failure.phase]} on a kept-alive"
                        " connection, retrying on a new one" + self._context(request, peer),
                    )
                    continue
                message = self._failure_message(failure, len(packet))
                fresh = False
                next_peer = self._next_peer(request, group, body, tried, failure, started)
                if next_peer is None:
                    # The front logs this one, with the context (the report names the peer).
                    self._report_failure(group, peer, failure.phase, request)
                    error = UpstreamTimeout if failure.kind == "timeout" else UpstreamError
                    raise error(message) from None
                self.runtime.log("error", message + self._context(request, peer))
                self._report_failure(group, peer, failure.phase, request)
                peer = next_peer
                continue
            except BaseException:
                balancer.release(peer)
                raise
            status = response.head.status
            report.status = status
            report.header_time = clock() - attempt_started
            if f"http_{status}" in settings.next_upstream:
                status_failure = _Failure(
                    f"http_{status}", "header", f"upstream returned {status}", request_sent=True
                )
                next_peer = self._next_peer(request, group, body, tried, status_failure, started)
                if next_peer is not None:
                    response.connection.abort()
                    balancer.release(peer)
                    if status in _FAILURE_STATUSES:
                        self._report_failure(group, peer, "header", request)
                    self.runtime.log(
                        "warn",
                        f"upstream returned {status} while reading response header from"
                        f" upstream, trying the next one (next_upstream http_{status})"
                        + self._context(request, peer),
                    )
                    peer = next_peer
                    fresh = False
                    continue
            balancer.report_success(peer)
            return response

    def _may_resend(self, request: Request, body: _Body) -> bool:
        if body.started and not body.replayable:
            return False
        return (
            request.method not in _NON_IDEMPOTENT or "non_idempotent" in self.settings.next_upstream
        )

    def _next_peer(
        self,
        request: Request,
        group: UpstreamGroup,
        body: _Body,
        tried: list[Peer],
        failure: _Failure,
        started: float,
    ) -> Peer | None:
        """The peer to try next after ``failure``, or None when nginx would stop here."""
        settings = self.settings
        if failure.kind not in settings.next_upstream:
            return None
        if body.started and not body.replayable:
            return None  # nginx: a body already sent unbuffered cannot be sent again
        if (
            failure.request_sent
            and request.method in _NON_IDEMPOTENT
            and "non_idempotent" not in settings.next_upstream
        ):
            return None
        if settings.next_upstream_tries and len(tried) >= settings.next_upstream_tries:
            return None
        now = self.runtime.clock()
        if settings.next_upstream_timeout and now - started >= settings.next_upstream_timeout:
            return None
        return group.balancer.pick(now, request.client_ip, tried)

    def _report_failure(
        self, group: UpstreamGroup, peer: Peer, phase: Phase, request: Request
    ) -> None:
        if group.balancer.report_failure(peer, self.runtime.clock()):
            self.runtime.log(
                "warn",
                f"upstream server temporarily disabled {_PHASE_TEXT[phase]}"
                + self._context(request, peer),
            )

    async def _attempt(
        self,
        exchange: Exchange,
        report: UpstreamReport,
        group: UpstreamGroup,
        peer: Peer,
        body: _Body,
        packet: bytes,
        fresh: bool,
        attempt_started: float,
    ) -> _Response:
        request = exchange.request
        connection: UpstreamConnection | None = None
        if self._pooled and not fresh:
            connection = group.pool.take(peer.endpoint)
        reused = connection is not None
        handed_over = False
        try:
            if connection is None:
                connection = await self._connect(peer)
                group.pool.opened += 1
                report.connect_time = self.runtime.clock() - attempt_started
            else:
                report.connect_time = 0.0
            body.rewind()
            if self._scheme == "uwsgi":
                await self._send_uwsgi(connection, packet, body)
            else:
                await self._send_http(connection, request, body)
            connection.requests += 1
            parser = ResponseParser(
                head_request=request.method == "HEAD",
                allow_no_status_line=self._scheme == "uwsgi",
                # nginx upgrades only when the client asked to (r->headers_in.upgrade).
                allow_upgrade=self._scheme == "http" and request.header(b"upgrade") is not None,
            )
            head = await self._read_head(connection, parser, reused)
            handed_over = True
            return _Response(peer, connection, parser, head, attempt_started)
        finally:
            if connection is not None and not handed_over:
                connection.abort()

    async def _connect(self, peer: Peer) -> UpstreamConnection:
        timeout = self.settings.connect_timeout or None
        try:
            return await open_connection(peer.endpoint, self.runtime.clock, timeout)
        except TimeoutError:
            raise _Failure(
                "timeout",
                "connect",
                f"upstream timed out ({_TIMED_OUT})",
                request_sent=False,
                hint="the peer does not accept connections in time: is it overloaded or"
                " firewalled? raise proxy_connect_timeout only if it is just slow",
            ) from None
        except OSError as exc:
            refused = exc.errno == errno.ECONNREFUSED
            raise _Failure(
                "error",
                "connect",
                f"connect() to {peer.endpoint} failed ({_errno_text(exc)})",
                request_sent=False,
                hint="is the app server running and listening on that address?" if refused else "",
            ) from None

    async def _write(self, connection: UpstreamConnection, data: bytes, first: bool) -> None:
        """Write and wait for the socket to drain (proxy_send_timeout between writes).

        Any failed write counts as "request sent" (part of it may have reached the
        app); only the first write on a reused connection can be a stale one.
        """
        try:
            await connection.send(data, self.settings.send_timeout or None)
        except TimeoutError:
            raise _Failure(
                "timeout", "send", f"upstream timed out ({_TIMED_OUT})", request_sent=True
            ) from None
        except OSError as exc:
            raise _Failure(
                "error",
                "send",
                f"send() to {connection.endpoint} failed ({_errno_text(exc)})",
                request_sent=True,
                stale=connection.reused and first,
            ) from None

    async def _send_uwsgi(self, connection: UpstreamConnection, packet: bytes, body: _Body) -> None:
        # The vars packet and the first piece of a small body share one write.
        first = await body.next_chunk() if body.length else b""
        await self._write(connection, packet + first if first else packet, True)
        if not first:
            return
        while True:
            chunk = await body.next_chunk()
            if not chunk:
                return
            await self._write(connection, chunk, False)

    async def _send_http(
        self,
        connection: UpstreamConnection,
        request: Request,
        body: _Body,
    ) -> None:
        head = self._http_head(request, body)
        if body.length == 0 or (body.length is None and not request.chunked):
            await self._write(connection, head, True)
            return
        chunked = body.length is None
        first = await body.next_chunk()
        if chunked:
            await self._write(connection, head + _chunk(first), True)
            if not first:
                return
        else:
            await self._write(connection, head + first, True)
        while True:
            chunk = await body.next_chunk()
            if not chunk:
                break
            await self._write(connection, _chunk(chunk) if chunked else chunk, False)
        if chunked:
            await self._write(connection, b"0\r\n\r\n", False)

    async def _read_head(
        self,
        connection: UpstreamConnection,
        parser: ResponseParser,
        reused: bool,
    ) -> ResponseHead:
        while True:
            try:
                event = parser.next_event()
            except IncompleteResponse as exc:
                raise _Failure(
                    "error",
                    "header",
                    "upstream prematurely closed connection",
                    request_sent=True,
                    stale=reused and exc.received == 0,
                    hint="the app server closed the connection without answering: did its"
                    " worker crash, get killed (harakiri, OOM) or refuse the request? its log"
                    " says which",
                ) from None
            except ResponseError as exc:
                raise _Failure("invalid_header", "header", str(exc), request_sent=True) from None
            if event is NEED_DATA:
                parser.feed(await self._read(connection, "header", parser, reused))
                continue
            assert isinstance(event, ResponseHead)
            return event

    async def _read(
        self,
        connection: UpstreamConnection,
        phase: Phase,
        parser: ResponseParser,
        reused: bool,
    ) -> bytes:
        try:
            return await connection.read(READ_SIZE, self.settings.read_timeout or None)
        except TimeoutError:
            hint = ""
            if phase == "header":
                hint = (
                    "the app took longer than proxy_read_timeout"
                    f" ({self.settings.read_timeout:g}s) to answer: make the view faster or"
                    " raise proxy_read_timeout (and the app server's harakiri with it)"
                )
            raise _Failure(
                "timeout", phase, f"upstream timed out ({_TIMED_OUT})", request_sent=True, hint=hint
            ) from None
        except OSError as exc:
            raise _Failure(
                "error",
                phase,
                f"recv() from {connection.endpoint} failed ({_errno_text(exc)})",
                request_sent=True,
                stale=reused and parser.bytes_received == 0,
            ) from None

    # -- request building -------------------------------------------------------------------

    def _uwsgi_packet(self, request: Request) -> bytes:
        values = [get(request) for get in self._uwsgi_getters]
        # The body is de-chunked with a CONTENT_LENGTH: the app must not see the old framing.
        exclude = (b"transfer-encoding",) if request.chunked else ()
        try:
            return self._uwsgi_vars.encode(values, request.headers, exclude)
        except VarsTooLarge as exc:
            raise ClientError(
                f"{exc} while sending request to upstream", status=431, level="warn"
            ) from None

    def _http_head(self, request: Request, body: _Body) -> bytes:
        target = request_uri(request)
        lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        append = lines.append
        overridden = self._http_param_names
        if b"host" not in overridden:
            append(b"Host: " + expand(self._host, request) + b"\r\n")
        connection_tokens = _connection_tokens(request.headers)
        for name, value in request.headers:
            if (
                name in _SET_BY_HTTP_PROXY
                or name in _HOP_BY_HOP
                or name.startswith(b"proxy")
                or name in connection_tokens
                or name in overridden
                or b"_" in name
            ):
                continue
            append(name + b": " + value + b"\r\n")
        if b"x-real-ip" not in overridden:
            append(b"X-Real-IP: " + request.client_ip.encode("ascii") + b"\r\n")
        if b"x-forwarded-for" not in overridden:
            append(b"X-Forwarded-For: " + forwarded_for(request) + b"\r\n")
        if b"x-forwarded-proto" not in overridden:
            append(b"X-Forwarded-Proto: " + request.scheme.encode("ascii") + b"\r\n")
        for name, template in self._http_params:
            value = expand(template, request)
            if value:  # nginx: an empty proxy_set_header value removes the header
                append(name + b": " + value + b"\r\n")
        if body.length is None:
            if request.chunked:
                append(b"Transfer-Encoding: chunked\r\n")
        else:
            append(b"Content-Length: %d\r\n" % body.length)
        append(b"\r\n")
        return b"".join(lines)

    # -- an upgraded connection ------------------------------------------------------------

    async def _tunnel(
        self, exchange: Exchange, report: UpstreamReport, response: _Response
    ) -> None:
        """101: the upstream's head to the client, then bytes both ways (edge.tunnel)."""
        connection = response.connection
        try:
            headers = [
                (name, value)
                for name, value in response.head.headers
                if name.lower() not in _HIDDEN_RESPONSE
            ]
            switch = getattr(exchange.response, "switch_protocols", None)
            if switch is None:
                raise UpstreamError("upstream switched protocols (101), which this client cannot")
            client = await switch(headers)
            report.response_time = None
            try:
                why = await relay(
                    client,
                    connection,
                    response.parser.take_rest(),
                    self.settings.read_timeout or None,
                    self.settings.send_timeout or None,
                    exchange.request.server.send_timeout,
                )
                self.runtime.log("info", why + self._context(exchange.request, response.peer))
            finally:
                client.close()
        finally:
            self._finish_timing(report, response)
            connection.abort()

    # -- relaying the response --------------------------------------------------------------

    async def _relay(
        self, exchange: Exchange, report: UpstreamReport, group: UpstreamGroup, response: _Response
    ) -> None:
        request = exchange.request
        sink = exchange.response
        head = response.head
        connection = response.connection
        parser = response.parser
        headers = _response_headers(head.headers)
        collector: CacheCollector | None = None
        if self._cache is not None and request.method in ("GET", "HEAD"):
            collector = self._cache.collector(request, head.status, head.reason or None, headers)
            headers.append((b"X-Cache", b"MISS"))
        client_gone = False
        kept = False
        try:
            try:
                await sink.send_head(head.status, headers, head.reason or None)
            except ClientGone:
                if not self.settings.ignore_client_abort:
                    raise
                client_gone = True
                collector = None
            while True:
                try:
                    event = parser.next_event()
                except ResponseError as exc:
                    cause = (
                        "upstream prematurely closed connection"
                        if isinstance(exc, IncompleteResponse)
                        else str(exc)
                    )
                    self._body_failure(request, response, cause)
                if event is NEED_DATA:
                    try:
                        data = await self._read(connection, "body", parser, False)
                    except _Failure as failure:
                        self._body_failure(request, response, failure.cause)
                    parser.feed(data)
                    continue
                if type(event) is not Data:
                    break  # EndOfMessage
                data = event.data
                if collector is not None:
                    collector.add(data)
                if client_gone:
                    continue
                try:
                    await sink.send(data)
                except ClientGone:
                    if not self.settings.ignore_client_abort:
                        raise
                    client_gone = True  # keep reading the upstream to its end
                    collector = None
            self._finish_timing(report, response)
            hint = self._reuse_hint(head, parser)
            if hint is not None:
                group.pool.give(connection, hint if hint > 0 else None)
            else:
                connection.close()
            kept = True
            if collector is not None:
                collector.finish()  # the body is complete, whatever the client does next
            if client_gone:
                raise ClientGone()
            await sink.end()
        finally:
            if not kept:
                self._finish_timing(report, response)
                connection.abort()

    def _reuse_hint(self, head: ResponseHead, parser: ResponseParser) -> float | None:
        """None when the connection must close; else the peer's idle timeout (0: unknown).

        An HTTP peer keeps the connection unless it said otherwise; a uwsgi peer
        only when it accepted our offer with ``Wsgistack-Keepalive``.
        """
        if not self._pooled or not parser.reusable:
            return None
        if self._scheme == "uwsgi":
            accepted = head.header(KEEPALIVE_HEADER)
            if accepted is None:
                return None
            return _timeout_hint(accepted) or 0.0
        hint = head.header(b"keep-alive")
        return 0.0 if hint is None else _timeout_hint(hint) or 0.0

    def _body_failure(self, request: Request, response: _Response, cause: str) -> NoReturn:
        # nginx logs this at error; the front logs ResponseAborted only at info.
        message = f"{cause} {_PHASE_TEXT['body']}"
        self.runtime.log("error", message + self._context(request, response.peer))
        raise ResponseAborted(message)

    def _finish_timing(self, report: UpstreamReport, response: _Response) -> None:
        report.response_time = self.runtime.clock() - response.started

    async def _send_cached(self, exchange: Exchange, entry: CachedResponse) -> None:
        sink = exchange.response
        await sink.send_head(entry.status, [*entry.headers, (b"X-Cache", b"HIT")], entry.reason)
        if entry.body and exchange.request.method != "HEAD":
            await sink.send(entry.body)
        await sink.end()

    # -- messages -----------------------------------------------------------------------------

    def _context(self, request: Request, peer: Peer | None) -> str:
        """nginx's error-log tail (client, server, request, upstream, host) for the
        lines the proxy logs itself; the front adds it to the errors we raise."""
        target = str(peer.endpoint) if peer is not None else self.settings.upstream
        upstream = f"{self._scheme}://{target}"
        host = request.header(b"host")
        return request_context(
            client=request.client_ip,
            server=request.server.server_name[0] if request.server.server_name else "",
            request=request.request_line,
            upstream=upstream,
            host=host.decode("latin-1") if host is not None else None,
        )

    def _failure_message(self, failure: _Failure, packet_size: int) -> str:
        """``<cause> while <phase> (hint: <what to change>)``, without the context tail."""
        message = f"{failure.cause} {_PHASE_TEXT[failure.phase]}"
        hint = failure.hint
        if (
            self._scheme == "uwsgi"
            and failure.phase == "header"
            and failure.kind == "error"
            and packet_size > UWSGI_DEFAULT_BUFFER_SIZE
        ):
            hint = (
                f"this request's uwsgi vars block is {packet_size} bytes: if the app server"
                ' logs "invalid request block size", raise its buffer-size'
            )
        return f"{message} (hint: {hint})" if hint else message


# --- helpers ------------------------------------------------------------------------------


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b"0\r\n\r\n"


def _connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    tokens.discard(b"")
    return frozenset(tokens)


def _response_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's headers minus hop-by-hop ones and those nginx hides."""
    connection_tokens = _connection_tokens(headers)
    result: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        lowered = name.lower()
        if (
            lowered in _HOP_BY_HOP
            or lowered in _HIDDEN_RESPONSE
            or lowered.startswith(b"proxy")
            or lowered in connection_tokens
        ):
            continue
        result.append((name, value))
    return result


def _timeout_hint(value: bytes) -> float | None:
    """``timeout=N`` from a ``Keep-Alive`` or ``Wsgistack-Keepalive`` value."""
    match = _KEEP_ALIVE_TIMEOUT.search(value)
    return float(match.group(1)) if match else None


__all__ = ["ProxyHandlerImpl"]
