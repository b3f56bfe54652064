"""One request through the edge: real_ip -> route -> limits -> access -> handler -> redirects -> log.

Theory of operation
-------------------
The transport (``edge.protocol``) parses a head and hands it here.  Two ways
through, with the same rules:

*Answered now* (``answer_now``).  When nothing has to wait, the request is
answered inside ``data_received``: no task, no awaits, no request objects.
That is a request without a body, on a location without ``limit_req`` or
``limit_conn``, whose handler can answer from memory
(``respond_now``: a small static file from the hot-file cache, a constant
``return``, a microcache hit).  The handler returns the status, the header
lines and the body; we add the status line, ``Server``, ``Date`` and
``Connection``, write it in one piece and log it.  Anything unusual (a
conditional or range header, a variable to expand, a refused request) makes
``respond_now`` decline, and the request takes the other way, which gives
the same answer.

*Served by a task* (``begin`` / ``respond`` / ``finish``).  ``begin`` builds
the ``Request`` (real_ip, server, location), its body reader and its
response writer; ``respond`` runs ``dispatch`` (client_max_body_size,
limit_req with its delay, limit_conn, access, the handler, internal
redirects) inside the request-task boundary; ``finish`` gives back what the
request held and writes its access-log line.

Errors follow STYLE.md: every exception that ends a request carries its
status (``EdgeError.status``, ``HttpProtocolError.status_hint``) and
``status_of`` is the one place that reads it.  A client fault gets its status,
``Connection: close`` and an ``info`` line (as nginx logs them: a scanner
must not flood the log); a server fault gets 500 and a traceback; the
``except Exception`` lives only here, at the request-task boundary.  A
handler that fails after the head went out can only cut the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from edge.access import access_allowed
from edge.accesslog import AccessEntry, remote_user
from edge.body import RequestBodyReader
from edge.config.schema import Listen, ProxyHandler, Server
from edge.errorlog import request_context
from edge.exchange import (
    ClientError,
    ClientGone,
    EdgeError,
    Exchange,
    Request,
    ResponseAborted,
    ResponseSink,
    UpstreamReport,
)
from edge.gzip_filter import GzipSink
from edge.handlers import FastAnswer, InternalRedirect
from edge.limits import acquire_connections, limit_requests, release_connections
from edge.metrics import observe, status_offset
from edge.realip import real_client_ip
from edge.response_rules import HeaderSink, ResponseRules, RulesCache, serve_error_page
from edge.routing import normalize_host, normalize_uri
from edge.variables import new_request_id, request_id
from edge.writer import ResponseWriter
from httpproto import RequestHead, http_date, reason_phrase
from httpproto.request_id import sane_request_id

if TYPE_CHECKING:
    from edge.config.schema import LimitConnRule, Location
    from edge.state import ServerState

MAX_INTERNAL_REDIRECTS = 10  # nginx's NGX_HTTP_MAX_URI_CHANGES
CLIENT_CLOSED = 499  # nginx's status for "client closed the connection"

# Error pages after which nginx drops keep-alive (ngx_http_special_response_handler):
# the request was malformed or the server is in doubt, so the stream is not trusted.
_CLOSING_STATUSES = frozenset((400, 408, 413, 414, 500, 501))
_KEEP_ALIVE_END = b"Connection: keep-alive\r\n\r\n"
_ROUTES_KEPT = 4096  # memoized (listen, Host, path) -> route; cleared when full
_CLOSE_END = b"Connection: close\r\n\r\n"


def status_of(exc: BaseException) -> int:
    """The one mapping from an exception to a response status (STYLE: no isinstance ladder)."""
    status = getattr(exc, "status", None) or getattr(exc, "status_hint", None)
    return status if isinstance(status, int) else 500


class Front(Protocol):
    """What the pipeline needs from the connection a request arrived on."""

    listen: Listen
    scheme: str  # "http" or "https": what the request came over ($scheme, $https)
    number: int
    peer_ip: str
    peer_port: int
    local_ip: str
    local_port: int
    defaults: Server  # the listener's default server (limits before the Host is known)
    requests: int  # requests completed on this connection
    must_close: bool  # the stream cannot carry another request

    @property
    def closed(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def new_body(self, head: RequestHead, timeout: float) -> RequestBodyReader: ...

    def new_response(
        self, request: Request, keep_alive: bool, send_timeout: float
    ) -> ResponseWriter: ...

    def set_body_limit(self, limit: int | None) -> None: ...


class RequestCycle:
    """One request's state as the pipeline sees it (the handler sees ``exchange``)."""

    __slots__ = (
        "request",
        "body",
        "response",
        "exchange",
        "raw_line",
        "bad_uri",
        "conn_rules",
        "client_gone",
        "broken",
        "redirects",
        "error_paged",
        "front",
    )

    def __init__(
        self,
        request: Request,
        body: RequestBodyReader,
        response: ResponseWriter,
        raw_line: bytes,
        bad_uri: bool,
        front: Front | None = None,
    ) -> None:
        self.front = front  # the connection (or HTTP/2 stream) it arrived on
        self.request = request
        self.body = body
        self.response = response
        self.exchange = Exchange(request, body, response)
        self.raw_line = raw_line
        self.bad_uri = bad_uri
        self.conn_rules: tuple[LimitConnRule, ...] | None = None  # limit_conn slots held
        self.client_gone = False
        self.broken = False  # the connection cannot carry another request
        self.redirects = 0
        self.error_paged: int | None = None  # the status an error_page replaced, once

    def log_status(self) -> int:
        """What the access log says: the status sent, else 499 (nginx's "client closed")."""
        logged = self.request.logged_status
        if logged is not None:
            return logged
        if self.response.started:
            return self.response.status
        return CLIENT_CLOSED

    def ignores_client_abort(self) -> bool:
        location = self.request.location
        if location is None:
            return False
        handler = location.handler
        return isinstance(handler, ProxyHandler) and handler.ignore_client_abort


_FastEntry = tuple["Location", Callable[..., FastAnswer | None] | None, "ResponseRules | None", int]


class Pipeline:
    """The request logic of one worker and config; see the module docstring."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.router = state.router
        self.real_ip = state.config.real_ip
        # location id -> (location, its handler's respond_now or None, its response
        # rules, its requests cell), filled as seen.
        self._fast: dict[int, _FastEntry] = {}
        self.rules = RulesCache()
        self.metrics = state.metrics
        self._cells = state.metrics.cells
        self._counting = state.metrics.counting
        self.trust_request_id = state.config.request_id.trust_incoming
        self._status_lines: dict[int, bytes] = {}
        self._routes: dict[
            tuple[Listen, bytes | None, bytes], tuple[Server, Location | None, str | None]
        ] = {}

    # -- answered now --------------------------------------------------------------

    def answer_now(self, front: Front, head: RequestHead, started: float) -> float | None:
        """Answer ``head`` at once if nothing has to wait.

        None if it cannot be; else how long to keep the connection for the next
        request (``keepalive_timeout``), 0 to close it.
        """
        if head.content_length or head.chunked:
            return None
        if self.real_ip.trusted:
            return None
        server, location, path = self.route(front.listen, head.host, head.path)
        if location is None or location.limit_req or location.limit_conn:
            return None
        if location.access and not access_allowed(location.access, front.peer_ip):
            return None
        entry = self._fast.get(id(location))
        if entry is None or entry[0] is not location:
            entry = self._fast_entry(server, location)
        responder = entry[1]
        rules = entry[2]
        if responder is None:
            return None
        if rules is not None and not _fast_rules_allow(rules, head):
            return None
        answer = responder(head, path)
        if answer is None:
            return None
        status, fields, body = answer
        if rules is not None:
            if status in rules.error_pages:
                return None
            extra = rules.fast_fields(status)
            if extra is None:
                return None
            fields += extra
        state = self.state
        keep = (
            head.keep_alive
            and not state.stopping
            and server.keepalive_timeout > 0
            and front.requests + 1 < server.keepalive_requests
        )
        if head.method == "HEAD" or status < 200 or status == 204 or status == 304:
            body = b""
        line = self._status_lines.get(status)
        if line is None:
            line = self._status_lines[status] = b"HTTP/1.1 %d %s\r\nServer: edge\r\nDate: " % (
                status,
                reason_phrase(status).encode("latin-1"),
            )
        now = time.time()
        front.write(
            b"".join(
                (
                    line,
                    http_date(now),
                    b"\r\n",
                    fields,
                    _KEEP_ALIVE_END if keep else _CLOSE_END,
                    body,
                )
            )
        )
        if self._counting:
            self._cells[entry[3] + status_offset(status)] += 1
        if state.access_log is not None and location.access_log:
            state.write_access(
                AccessEntry(
                    remote_addr=front.peer_ip,
                    time=now,
                    request_line=_request_line(head),
                    status=status,
                    body_bytes_sent=len(body),
                    http_referer=_header(head, b"referer"),
                    http_user_agent=_header(head, b"user-agent"),
                    remote_user=remote_user(_header(head, b"authorization")),
                    request_time=now - started,
                    http_host=head.host,
                    http_x_forwarded_for=_header(head, b"x-forwarded-for"),
                    request_id=self._fast_request_id(head)
                    if state.access_format.wants_request_id
                    else None,
                )
            )
        return server.keepalive_timeout if keep else 0.0

    def _fast_request_id(self, head: RequestHead) -> str:
        if self.trust_request_id:
            incoming = _header(head, b"x-request-id")
            if incoming is not None and sane_request_id(incoming):
                return incoming.decode("ascii")
        return new_request_id()

    def route(
        self, listen: Listen, host: bytes | None, raw_path: bytes
    ) -> tuple[Server, Location | None, str | None]:
        """Server, location and normalized path; the location is None for a refused path.

        Memoized (bounded): the same few hosts and paths come again and again,
        and normalizing and matching them is pure.
        """
        key = (listen, host, raw_path)
        found = self._routes.get(key)
        if found is None:
            path = normalize_uri(raw_path) if raw_path[:1] == b"/" else None
            server, location = self.router.route(listen.host, listen.port, host, path or "/")
            found = (server, location if path is not None else None, path)
            if len(self._routes) >= _ROUTES_KEPT:
                self._routes.clear()
            self._routes[key] = found
        return found

    def _fast_entry(self, server: Server, location: Location) -> _FastEntry:
        handler = self.state.handlers.handler_for(location)
        entry = (
            location,
            getattr(handler, "respond_now", None),
            self.rules.get(server, location),
            self.state.metrics.requests_base(server, location),
        )
        self._fast[id(location)] = entry
        return entry

    # -- served by a task ----------------------------------------------------------

    def begin(self, front: Front, head: RequestHead, started: float) -> RequestCycle:
        """The request, its body and its response for ``head``."""
        state = self.state
        host_header = head.host
        server, location, path = self.route(front.listen, host_header, head.path)
        client_ip = front.peer_ip
        real_ip = self.real_ip
        if real_ip.trusted:
            wanted = real_ip.header.lower().encode("latin-1")
            forwarded = [value for name, value in head.headers if name == wanted]
            if forwarded:
                client_ip = real_client_ip(front.peer_ip, b", ".join(forwarded), real_ip)
        raw_line = _request_line(head)
        request = Request(
            method=head.method,
            target=head.target,
            path=path or "",
            raw_path=head.path,
            query=head.query,
            http_version=head.http_version,
            headers=head.headers,
            host=normalize_host(host_header) or _server_name(server) or front.local_ip,
            scheme=front.scheme,
            client_ip=client_ip,
            client_port=front.peer_port,
            peer_ip=front.peer_ip,
            server_addr=front.local_ip,
            server_port=front.local_port,
            server=server,
            # None only for a refused target or no match; dispatch answers those
            # before any handler can see the request.
            location=location,  # type: ignore[arg-type]
            content_length=head.content_length,
            chunked=head.chunked,
            keep_alive=head.keep_alive,
            started=started,
            request_line=raw_line.decode("latin-1"),
            trusts_request_id=self.trust_request_id,
        )
        body = front.new_body(head, server.client_body_timeout)
        keep_alive = (
            head.keep_alive
            and not state.stopping
            and server.keepalive_timeout > 0
            and front.requests + 1 < server.keepalive_requests
        )
        response = front.new_response(request, keep_alive, server.send_timeout)
        return RequestCycle(request, body, response, raw_line, bad_uri=path is None, front=front)

    async def respond(self, front: Front, cycle: RequestCycle) -> None:
        """Run the request; every way it can end becomes a response, a cut or a log line."""
        response = cycle.response
        try:
            await self.dispatch(front, cycle)
            if not response.started:
                raise RuntimeError("the handler returned without sending a response")
            if not response.finished:
                await cycle.exchange.response.end()
        except ResponseAborted as exc:
            cycle.broken = True
            if cycle.request.logged_status is None:
                self.log(front, "info", f"response aborted: {exc}", cycle)
        except ClientGone as exc:
            cycle.client_gone = True
            cycle.broken = True
            self.log(front, "info", f"client closed connection: {exc}", cycle)
        except Exception as exc:  # the request-task boundary (STYLE rule 5)
            await self._fail(front, cycle, exc)

    async def _fail(self, front: Front, cycle: RequestCycle, exc: Exception) -> None:
        status = status_of(exc)
        self._log_failure(front, cycle, exc)
        response = cycle.response
        if response.started:
            cycle.broken = True  # the status is gone: all we can do is cut the response
            return
        if status in _CLOSING_STATUSES or front.must_close or not cycle.body.drain_buffered():
            response.keep_alive = False
        headers = tuple(getattr(exc, "headers", ()))
        request = cycle.request
        rules = self.rules.get(request.server, request.location)
        if rules is not None and rules.headers:
            headers += tuple(rules.header_fields(request, status))
        try:
            await response.send_error(status, headers)
        except ClientGone:
            cycle.client_gone = True
            cycle.broken = True

    def _log_failure(self, front: Front, cycle: RequestCycle, exc: Exception) -> None:
        status = status_of(exc)
        expected = hasattr(exc, "status") or hasattr(exc, "status_hint")
        level = getattr(exc, "level", None) or ("error" if status >= 500 else "info")
        if expected:
            self.log(front, level, str(exc) or type(exc).__name__, cycle)
        else:
            self.log(
                front, "error", f"unexpected error while serving the request: {exc!r}", cycle, exc
            )

    async def dispatch(self, front: Front, cycle: RequestCycle) -> None:
        """The request's handling, then its error_page when it ends in an error that has one."""
        try:
            await self._dispatch(front, cycle)
        except EdgeError as exc:
            request = cycle.request
            rules = self.rules.get(request.server, request.location)
            page = None if rules is None else rules.error_pages.get(exc.status)
            if page is None or cycle.error_paged is not None or cycle.response.started:
                raise
            self._log_failure(front, cycle, exc)
            cycle.error_paged = exc.status
            await serve_error_page(self, cycle, page, exc.status)

    async def _dispatch(self, front: Front, cycle: RequestCycle) -> None:
        request = cycle.request
        state = self.state
        if cycle.bad_uri:
            raise ClientError(f"client sent invalid request target {request.target[:200]!r}")
        location = request.location
        if location is None:
            raise EdgeError(f'no location matches "{request.path}"', status=404, level="info")
        # client_max_body_size is checked in nginx's find-config phase, before limits.
        limit = location.client_max_body_size
        if limit is None:
            limit = request.server.client_max_body_size
        if limit and request.content_length is not None and request.content_length > limit:
            front.must_close = True
            raise ClientError(
                f"client intended to send too large body: {request.content_length} bytes",
                status=413,
                level="error",
            )
        if request.chunked:
            front.set_body_limit(limit or None)
        key = request.client_ip
        if location.limit_req:
            verdict = limit_requests(location.limit_req, state.req_zones, key, time.monotonic())
            excess = f"{verdict.excess / 1000:.3f}"
            if not verdict.allowed:
                self.metrics.rejected("edge_limit_req_rejected_total", verdict.zone)
                raise EdgeError(
                    f'limiting requests, excess: {excess} by zone "{verdict.zone}"',
                    status=verdict.status,
                    level="error",
                )
            if verdict.delay > 0:
                self.log(
                    front,
                    "warn",
                    f'delaying request, excess: {excess}, by zone "{verdict.zone}"',
                    cycle,
                )
                await asyncio.sleep(verdict.delay)
        if location.limit_conn:
            refused = acquire_connections(location.limit_conn, state.conn_zones, key)
            if refused is not None:
                self.metrics.rejected("edge_limit_conn_rejected_total", refused.zone)
                raise EdgeError(
                    f'limiting connections by zone "{refused.zone}"',
                    status=refused.status,
                    level="error",
                )
            cycle.conn_rules = location.limit_conn
            cycle.response.on_last_bytes = lambda: self._release_connections(cycle)
        await self.serve_location(cycle)

    async def serve_location(self, cycle: RequestCycle, status: int | None = None) -> None:
        """Run the location's handler, following internal redirects; ``status`` replaces
        the response's (an error page)."""
        request, body = cycle.request, cycle.body
        state = self.state
        while True:
            location = request.location
            if not access_allowed(location.access, request.client_ip):
                raise EdgeError("access forbidden by rule", status=403, level="error")
            rules = self.rules.get(request.server, location)
            if rules is None and status is None:
                cycle.exchange.response = cycle.response
            else:
                cycle.exchange.response = _filtered(cycle, rules, status)
            handler = state.handlers.handler_for(location)
            if not getattr(handler, "reads_body", True) and not body.done:
                await body.discard()
            try:
                await handler.handle(cycle.exchange)
                return
            except InternalRedirect as redirect:
                if cycle.response.started:
                    raise RuntimeError("internal redirect after the response started") from None
                self._redirect(cycle, redirect.target)

    def _redirect(self, cycle: RequestCycle, target: str) -> None:
        """nginx's internal redirect: re-match the location for a new URI or ``@name``."""
        request = cycle.request
        cycle.redirects += 1
        if cycle.redirects > MAX_INTERNAL_REDIRECTS:
            raise EdgeError(
                f'rewrite or internal redirection cycle while internally redirecting to "{target}"',
                status=500,
            )
        table = self.router.locations(request.server)
        location: Location | None
        if target.startswith("@"):
            location = table.named(target)
        else:
            path_text, sep, query = target.partition("?")
            # A fallback is already-decoded text (nginx does not decode it again): escape
            # "%" so normalize_uri only merges slashes and resolves dot segments, which
            # keeps "$uri/../.." from pointing above the root.
            raw = path_text.encode("utf-8", "surrogateescape").replace(b"%", b"%25")
            path = normalize_uri(raw)
            if path is None:
                raise EdgeError(f'invalid internal redirect target "{target}"', status=500)
            request.path = path
            if sep:
                request.query = query.encode("latin-1", "replace")
            location = table.match(path)
        if location is None:
            raise EdgeError(
                f'no location for internal redirect to "{target}"', status=404, level="info"
            )
        request.location = location

    def _release_connections(self, cycle: RequestCycle) -> None:
        if cycle.conn_rules is not None:
            release_connections(cycle.conn_rules, self.state.conn_zones, cycle.request.client_ip)
            cycle.conn_rules = None

    def finish(self, cycle: RequestCycle) -> None:
        """Runs even when the task is cancelled: give back limits, remove spools, log."""
        self._release_connections(cycle)
        cycle.body.cleanup()
        state = self.state
        request, response = cycle.request, cycle.response
        report = request.upstream
        status = cycle.log_status()
        location = request.location
        now = time.time()
        if self._counting:
            base = self.metrics.requests_base(request.server, location)
            self._cells[base + status_offset(status)] += 1
            if report is not None:
                self._count_upstream(cycle, report, now)
        if report is not None:
            self._warn_upstream_error(cycle, report)
        if state.access_log is None or (location is not None and not location.access_log):
            return
        state.write_access(
            AccessEntry(
                remote_addr=request.client_ip,
                time=now,
                request_line=cycle.raw_line,
                status=status,
                body_bytes_sent=response.body_bytes,
                http_referer=request.header(b"referer"),
                http_user_agent=request.header(b"user-agent"),
                remote_user=remote_user(request.header(b"authorization")),
                request_time=now - request.started,
                http_host=request.header(b"host"),
                http_x_forwarded_for=request.header(b"x-forwarded-for"),
                upstream_addr=None if report is None or not report.peers else report.addr,
                upstream_status=None if report is None else report.status,
                upstream_response_time=None if report is None else report.response_time,
                cache_status=None if report is None else report.cache_status,
                request_id=request_id(request)
                if state.access_format.wants_request_id
                else request.request_id,
            )
        )

    def _count_upstream(self, cycle: RequestCycle, report: UpstreamReport, now: float) -> None:
        """A proxied request: its histograms and its cache result."""
        request = cycle.request
        metrics = self.metrics
        cells = self._cells
        if report.cache_status is not None and request.location is not None:
            cache = metrics.cache_cells(request.location)
            if cache is not None:
                cells[cache[0] if report.cache_status == "HIT" else cache[1]] += 1
        bases = metrics.histograms(report.name)
        if bases is not None:
            observe(cells, bases[0], now - request.started)
            if report.response_time is not None:
                observe(cells, bases[1], report.response_time)

    def _warn_upstream_error(self, cycle: RequestCycle, report: UpstreamReport) -> None:
        """An upstream that answered 5xx: one warn line with its name, peer and request ID."""
        request = cycle.request
        upstream_status = report.status
        front = cycle.front
        # Only a status the upstream sent (its head arrived): edge's own 502/504 for a
        # peer that failed already has its error line.
        if (
            upstream_status is not None
            and upstream_status >= 500
            and report.header_time is not None
            and front is not None
        ):
            peer = str(report.peers[-1]) if report.peers else "-"
            self.log(
                front,
                "warn",
                f'upstream "{report.name}" peer {peer} answered {upstream_status}, '
                f"request_id: {request_id(request)}",
                cycle,
            )

    # -- the error log -------------------------------------------------------------

    def log(
        self,
        front: Front,
        level: str,
        message: str,
        cycle: RequestCycle | None = None,
        exc: BaseException | None = None,
    ) -> None:
        """One error-log line with nginx's context (client, server, request, upstream, host)."""
        error_log = self.state.error_log
        if not error_log.enabled(level):
            return
        if cycle is None:
            context = request_context(
                client=front.peer_ip, server=_server_name(front.defaults), request=None
            )
        else:
            request = cycle.request
            host = request.header(b"host")
            context = request_context(
                client=request.client_ip,
                server=_server_name(request.server),
                request=request.request_line,
                upstream=None if request.upstream is None else request.upstream.url,
                host=None if host is None else host.decode("latin-1"),
            )
        error_log.log(level, message, connection=front.number, context=context, exc=exc)


def _request_line(head: RequestHead) -> bytes:
    return b"%s %s HTTP/%s" % (
        head.method.encode("ascii"),
        head.target,
        head.http_version.encode(),
    )


def _header(head: RequestHead, name: bytes) -> bytes | None:
    for key, value in head.headers:
        if key == name:
            return value
    return None


def _server_name(server: Server) -> str:
    return server.server_name[0] if server.server_name else ""


def _fast_rules_allow(rules: ResponseRules, head: RequestHead) -> bool:
    """answer_now leaves to the task what gzip might compress (the client accepts it)."""
    if rules.gzip is None:
        return True
    return _header(head, b"accept-encoding") is None


def _filtered(cycle: RequestCycle, rules: ResponseRules | None, status: int | None) -> ResponseSink:
    """The writer behind the location's response filters: add_header (and an error
    page's status), then gzip."""
    sink: ResponseSink = cycle.response
    request = cycle.request
    if rules is not None and rules.gzip is not None:
        sink = GzipSink(sink, request, rules.gzip)
    if status is not None or (rules is not None and rules.headers):
        sink = HeaderSink(sink, request, rules, status)
    return sink
