"""The HTTP/2 transport (RFC 9113): one ``asyncio.Protocol`` per connection, over TLS.

Theory of operation
-------------------
The ``h2`` library (python-hyper, sans-IO) is the protocol: frames, HPACK,
stream states and flow-control windows.  This module moves bytes between it
and the transport, and maps every stream onto the pipeline exactly as an
HTTP/1.1 request is mapped: a ``Stream`` is the pipeline's ``Front``, with a
``StreamBody`` to read the request body from and a ``StreamResponse`` to
answer on, and ``Pipeline.begin / respond / finish`` run it in a task of its
own.  Routing, limits, access, handlers, redirects and logs are the very
same code; upstreams stay HTTP/1.1 or uwsgi.  A stream without a body first
tries ``Pipeline.answer_now``, as an HTTP/1 head does: what it can answer from
memory comes back as one HTTP/1 response (``Stream.write``), whose status,
fields and body are sent as HEADERS and DATA at once, without a task.

Writes: everything a stream produces goes into h2's outgoing buffer, which
is written to the transport once per loop iteration (``_schedule_flush``),
so the frames of many streams leave in one write.  When the transport's
buffer is above its high-water mark, reading stops (a client that floods us
with PINGs or SETTINGS and never reads the answers gets nothing more read)
and streams wait in ``drain`` for at most ``send_timeout``.

Flow control, both ways.  Out: a stream sends no more DATA than the client's
windows (stream and connection) allow; a stream that waits for a window for
``send_timeout`` is reset and logged ("client timed out"), so a client that
never reads holds one stream's buffer, never more.  In: the stream window
is ``http2_body_preread_size``, and received DATA is acknowledged (window
updates) only as the handler reads it, so a slow upstream slows the client
down instead of filling our memory.

Limits, with nginx's names: ``http2_max_concurrent_streams`` (SETTINGS, and
h2 refuses a stream past it), the header list by
``large_client_header_buffers`` (number x size: SETTINGS_MAX_HEADER_LIST_SIZE,
and the HPACK decoder stops inflating past it), ``keepalive_timeout`` for a
connection without streams and ``client_header_timeout`` until its first
request, ``keepalive_requests`` streams per connection (then GOAWAY).

Defences:

* rapid reset (CVE-2023-44487): each stream the client resets before its
  response is complete spends one of ``2 x http2_max_concurrent_streams``
  credits, each completed response earns one back; with none left the
  connection ends with GOAWAY ENHANCE_YOUR_CALM.  As in nginx, a client may
  also open at most that many streams per read.
* HPACK bombs: the decoder's header list limit (above) counts decoded
  bytes, so a small block that expands is refused (ENHANCE_YOUR_CALM)
  before it is inflated.
* CONTINUATION floods: h2 buffers at most 64 CONTINUATION frames of one
  header block (a connection error past that), every frame is bounded by
  SETTINGS_MAX_FRAME_SIZE, and a connection that never completes a request
  is bound by the timers above.
* a stream that never reads: flow control and ``send_timeout`` (above).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import NoReturn, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from hpack.table import HeaderTable
from hyperframe.frame import GoAwayFrame

from edge.body import RequestBodyReader
from edge.config.schema import Listen, Server
from edge.errorlog import request_context
from edge.exchange import ClientError, ClientGone, Request, ResponseAborted, UpstreamError
from edge.handlers import special_response_body
from edge.pipeline import RequestCycle
from edge.state import CLOSED_PHASE, IDLE, REQUEST, ServerState
from edge.writer import ResponseWriter
from httpproto import RequestHead, reason_phrase

HIGH_WATER = 256 * 1024  # transport buffer above which reading stops and streams wait
FILE_PIECE = 256 * 1024  # the most of a file read at once for one stream
GRACEFUL_CLOSE = 1.0  # after GOAWAY, how long in-flight frames may still arrive

# Fields that mean something only to one HTTP/1 connection (RFC 9113 §8.2.2).
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_NO_BODY_STATUSES = frozenset((204, 304))


# HPACK (RFC 7541) for response headers: the static table and literals, never the
# dynamic table.  The encoding then depends on the header list alone, so a list seen
# again (the same file in the same second, the same error page) is a dict lookup, where
# hpack's encoder (pure Python: a dynamic-table search and Huffman coding per field) was
# the largest single cost of a response.  What it costs is a few bytes per response,
# which TLS and the frames dwarf; and no dynamic table means no compression oracle.
_STATIC_FIELDS = {field: index for index, field in enumerate(HeaderTable.STATIC_TABLE, 1)}
_STATIC_NAMES: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, 1):
    _STATIC_NAMES.setdefault(_name, _index)
_BLOCKS_KEPT = 1024
_TABLE_SIZE_ZERO = b"\x20"  # dynamic table size update to 0 (§6.3): we never add to it


def _hpack_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_field(name: bytes, value: bytes) -> bytes:
    index = _STATIC_FIELDS.get((name, value))
    if index is not None:
        return _hpack_integer(index, 7, 0x80)  # indexed field
    length = _hpack_integer(len(value), 7)
    index = _STATIC_NAMES.get(name)
    if index is not None:  # literal without indexing, indexed name
        return _hpack_integer(index, 4) + length + value
    return b"\x00" + _hpack_integer(len(name), 7) + name + length + value


class ResponseEncoder:
    """h2's ``encoder`` for one connection: ``encode(headers) -> bytes`` as above.

    h2 sets ``header_table_size`` when the client's SETTINGS change it; with no
    dynamic table in use, any size the client allows is fine.  The first block says
    once that the table is empty (size 0), as the decoder may otherwise assume 4096.
    """

    __slots__ = ("header_table_size", "_started")

    _blocks: dict[tuple[tuple[bytes, bytes], ...], bytes] = {}  # shared: the encoding is pure

    def __init__(self) -> None:
        self.header_table_size = 4096
        self._started = False

    def encode(self, headers: object) -> bytes:
        key = tuple(cast("list[tuple[bytes, bytes]]", headers))
        blocks = ResponseEncoder._blocks
        block = blocks.get(key)
        if block is None:
            block = b"".join([_hpack_field(name, value) for name, value in key])
            if len(blocks) >= _BLOCKS_KEPT:
                blocks.clear()
            blocks[key] = block
        if not self._started:
            self._started = True
            return _TABLE_SIZE_ZERO + block
        return block


def _config() -> h2.config.H2Configuration:
    return h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,  # bytes in, bytes out: what the pipeline speaks
        validate_inbound_headers=True,
        normalize_inbound_headers=True,
        # Our own headers are built lower-case and without connection fields.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )


class Http2Connection(asyncio.Protocol):
    """One HTTP/2 connection; see the module docstring."""

    def __init__(self, state: ServerState, listen: Listen) -> None:
        self.state = state
        self.listen = listen
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.h2 = h2.connection.H2Connection(config=_config())
        self.defaults: Server = Server()
        self.number = 0
        self.phase = IDLE
        self.peer_ip = ""
        self.peer_port = 0
        self.local_ip = ""
        self.local_port = 0
        self.streams: dict[int, Stream] = {}
        self.requests = 0  # streams accepted on this connection
        self.frame_size = 16384  # the largest DATA frame we send (http2_chunk_size)
        self.closing = False  # GOAWAY sent or received: no new streams
        self._credits = 0  # rapid-reset budget, see the module docstring
        self._max_credits = 0
        self._new_streams = 0  # streams opened by the current read
        self._flush_pending = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        state = self.state
        if not state.admit(self):
            self.phase = CLOSED_PHASE
            transport.abort()
            return
        self.number = state.next_connection_number()
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.peer_ip, self.peer_port = peer[0], peer[1]
        if isinstance(local, tuple):
            self.local_ip, self.local_port = local[0], local[1]
        defaults = self.defaults = state.router.server_for(self.listen.host, self.listen.port, None)
        buffers = defaults.large_client_header_buffers
        header_list = buffers.number * buffers.size
        streams = defaults.http2_max_concurrent_streams
        codes = h2.settings.SettingCodes
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: streams,
                codes.INITIAL_WINDOW_SIZE: defaults.http2_body_preread_size,
                codes.MAX_HEADER_LIST_SIZE: header_list,
            },
        )
        # The HPACK decoder counts decoded bytes against this: the HPACK-bomb defence.
        self.h2.decoder.max_header_list_size = header_list
        self.h2.encoder = ResponseEncoder()  # type: ignore[assignment]
        self._max_credits = self._credits = 2 * streams
        self.h2.initiate_connection()
        # The connection window covers every stream's preread, so it is never the
        # reason a stream waits (nginx opens it fully); each stream's window bounds it.
        wanted = streams * max(defaults.http2_body_preread_size, 65535)
        if wanted > 65535:
            self.h2.increment_flow_control_window(min(wanted, 2**31 - 1) - 65535)
        transport.set_write_buffer_limits(high=HIGH_WATER)
        self._flush()
        self._arm(defaults.client_header_timeout, "client timed out before sending a request")
        if state.stopping:
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # closing after GOAWAY: what still arrives is not read
        self._new_streams = 0
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the error's code.
            self.log("info", f"client sent invalid HTTP/2 data: {exc}")
            self._close_after_flush()
            return
        for event in events:
            handler = _EVENTS.get(type(event))
            if handler is not None:
                handler(self, event)
            if self.closed:
                return
        self._flush()

    def eof_received(self) -> bool:
        return False  # TLS has no half-close: the connection is over

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = CLOSED_PHASE
        self._drop_timer()
        self.state.forget(self)
        self._wake_writers()
        for stream in list(self.streams.values()):
            stream.lost()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.transport is not None and self.phase != CLOSED_PHASE:
            self.transport.resume_reading()
        self._wake_writers()

    # -- events ----------------------------------------------------------------------

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        self._new_streams += 1
        if self._new_streams > self._max_credits:
            self._calm_down("client opened too many streams at once")
            return
        if self.closing:
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        known = self.h2.streams.get(stream_id)
        if known is None or known.closed:
            # Reset in the same read as its HEADERS (h2 has processed the whole read):
            # the client pays for it now, as for any stream reset before its answer.
            self._credits -= 1
            if self._credits < 0:
                self._calm_down("client reset too many streams (rapid reset)")
            return
        self._drop_timer()
        self.phase = REQUEST
        self.requests += 1
        started = time.time()
        head = _request_head(event.headers or (), bool(event.stream_ended))
        stream = Stream(self, stream_id, head)
        if event.stream_ended:
            stream.body.finish()
            if self._answer_now(stream, head, started):
                self._after_request()
                return
        self.streams[stream_id] = stream
        task = self.loop.create_task(self._serve(stream, head, started))
        stream.task = task
        self.state.track(task)
        self._after_request()

    def _after_request(self) -> None:
        if self.requests >= self.defaults.keepalive_requests > 0 or self.state.stopping:
            self._go_away()  # this one is served, the next ones go elsewhere
        elif not self.streams:
            self.phase = IDLE
            self._arm(self.defaults.keepalive_timeout, None)
        if self.closing and not self.streams:
            self._close_after_flush()

    def _answer_now(self, stream: Stream, head: RequestHead, started: float) -> bool:
        """``Pipeline.answer_now`` for a stream: a request it can answer from memory is
        answered here, without a task, as on HTTP/1.  The pipeline writes the answer as
        one HTTP/1 response; its status, fields and body become HEADERS and DATA."""
        stream.answering = True
        try:
            keep = self.state.pipeline.answer_now(stream, head, started)
        except Exception as exc:  # a bug there must not cost the request: take the task path
            self.log("alert", f"unexpected error answering at once: {exc!r}")
            keep = None
        finally:
            stream.answering = False
        answer, stream.answer = stream.answer, b""
        if keep is None:
            return False
        top, _, body = answer.partition(b"\r\n\r\n")
        lines = top.split(b"\r\n")
        headers = [(b":status", lines[0][9:12])]
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name not in _CONNECTION_SPECIFIC:
                headers.append((name, value.strip()))
        connection = self.h2
        size = len(body)
        try:
            if not body:
                connection.send_headers(stream.id, headers, end_stream=True)
            else:
                connection.send_headers(stream.id, headers)
                whole = min(self.frame_size, connection.max_outbound_frame_size)
                if connection.local_flow_control_window(stream.id) < size or size > whole:
                    # The client's window (or the frame size) wants it in pieces: a task.
                    self.streams[stream.id] = stream
                    task = self.loop.create_task(self._send_answer_body(stream, body))
                    stream.task = task
                    self.state.track(task)
                    return True
                connection.send_data(stream.id, body, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.StreamIDTooLowError):
            return True  # reset by the client meanwhile: nothing more to send
        self._credits = min(self._max_credits, self._credits + 1)
        return True

    async def _send_answer_body(self, stream: Stream, body: bytes) -> None:
        response = StreamResponse(stream, False, self.defaults.send_timeout)
        response.started = True
        try:
            await response.send(body)
            await response.end()
            stream.complete = True
        except (ClientGone, ResponseAborted):
            pass
        finally:
            self.stream_done(stream)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length or 0
        if stream is None or stream.body.done:
            # Nobody will read it: give the window back at once.
            if size:
                self.h2.acknowledge_received_data(size, event.stream_id)
            return
        stream.body.feed(event.data or b"", size)
        if event.stream_ended:
            stream.body.finish()

    def _on_end(self, event: h2.events.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.body.finish()

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.reset = True
        if event.remote_reset and not stream.complete:
            self._credits -= 1
            if self._credits < 0:
                self._calm_down("client reset too many streams (rapid reset)")
                return
        stream.lost()

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.wake_window()
        else:
            for stream in self.streams.values():
                stream.wake_window()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            for stream in self.streams.values():
                stream.wake_window()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.closing = True
        if not self.streams:
            self._close_after_flush()

    # -- what streams use ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        transport = self.transport
        return self.phase == CLOSED_PHASE or transport is None or transport.is_closing()

    def schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self.h2.data_to_send()
        if data and not self.closed:
            assert self.transport is not None
            self.transport.write(data)

    async def drain(self, timeout: float, stream: Stream) -> None:
        if not self._write_paused:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout or None):
                await waiter
        except TimeoutError:
            raise stream.timed_out("client timed out while sending response to client") from None
        finally:
            if waiter in self._drain_waiters:
                self._drain_waiters.remove(waiter)
        if self.closed:
            raise ClientGone("client closed the connection")

    def stream_done(self, stream: Stream) -> None:
        """A stream's task is over: reset what is still open, give windows back, idle."""
        self.streams.pop(stream.id, None)
        if self.phase == CLOSED_PHASE:
            return
        unread = stream.body.unacknowledged
        if unread:
            self.h2.acknowledge_received_data(unread, stream.id)
        if not stream.reset:
            if not stream.complete:
                self._reset(stream.id, ErrorCodes.INTERNAL_ERROR)
            elif not stream.body.ended:
                # The answer is complete and we will not read the rest (RFC 9113 §8.1).
                self._reset(stream.id, ErrorCodes.NO_ERROR)
        if stream.complete:
            self._credits = min(self._max_credits, self._credits + 1)
        if not self.streams:
            self.phase = IDLE
            if self.closing:
                self._close_after_flush()
                return
            self._arm(self.defaults.keepalive_timeout, None)
        self.schedule_flush()

    def _reset(self, stream_id: int, code: ErrorCodes) -> None:
        try:
            self.h2.reset_stream(stream_id, code)
        except h2.exceptions.StreamClosedError:
            pass  # both sides have ended it meanwhile

    def log(self, level: str, message: str) -> None:
        error_log = self.state.error_log
        if error_log.enabled(level):
            server = self.defaults.server_name[0] if self.defaults.server_name else ""
            context = request_context(client=self.peer_ip, server=server, request=None)
            error_log.log(level, message, connection=self.number, context=context)

    # -- one stream by a task --------------------------------------------------------

    async def _serve(self, stream: Stream, head: RequestHead, started: float) -> None:
        pipeline = self.state.pipeline
        cycle = pipeline.begin(stream, head, started)
        stream.cycle = cycle
        try:
            await pipeline.respond(stream, cycle)
        finally:
            pipeline.finish(cycle)
            stream.complete = cycle.response.finished and not cycle.broken
            self.stream_done(stream)

    # -- closing ---------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY, the streams in flight finish, then the connection closes."""
        self._go_away()
        if not self.streams:
            self._close_after_flush()

    def _go_away(self) -> None:
        """GOAWAY NO_ERROR naming the last stream we serve; those in flight go on.

        Written by hand: h2's ``close_connection`` would end every stream too.
        """
        if self.closing or self.closed:
            return
        self.closing = True
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id
        frame.error_code = ErrorCodes.NO_ERROR
        self._flush()
        assert self.transport is not None
        self.transport.write(frame.serialize())

    def _calm_down(self, why: str) -> None:
        self.log("info", why)
        self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM)
        self.closing = True
        self._close_after_flush()

    def _close_after_flush(self) -> None:
        self._flush()
        self._drop_timer()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()  # what is buffered still goes out, then close_notify

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _arm(self, delay: float, timed_out: str | None) -> None:
        self._drop_timer()
        if delay > 0:
            self._timer = self.loop.call_later(delay, self._on_timer, timed_out)

    def _on_timer(self, timed_out: str | None) -> None:
        self._timer = None
        if self.streams:
            return
        if timed_out is not None:
            self.log("info", timed_out)
        self.shutdown()

    def _drop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


_EVENTS: dict[type, Callable[[Http2Connection, object], None]] = {
    h2.events.RequestReceived: Http2Connection._on_request,  # type: ignore[dict-item]
    h2.events.DataReceived: Http2Connection._on_data,  # type: ignore[dict-item]
    h2.events.StreamEnded: Http2Connection._on_end,  # type: ignore[dict-item]
    h2.events.StreamReset: Http2Connection._on_reset,  # type: ignore[dict-item]
    h2.events.WindowUpdated: Http2Connection._on_window,  # type: ignore[dict-item]
    h2.events.RemoteSettingsChanged: Http2Connection._on_settings,  # type: ignore[dict-item]
    h2.events.ConnectionTerminated: Http2Connection._on_goaway,  # type: ignore[dict-item]
}


def _request_head(headers: object, ended: bool) -> RequestHead:
    """The pipeline's view of a stream's request: pseudo-headers become the request line.

    h2 has checked the fields (RFC 9113 §8.2-8.3: lower-case names, the
    pseudo-headers a request needs, no connection-specific fields).
    """
    method = b"GET"
    target = b""
    authority: bytes | None = None
    host: bytes | None = None
    fields: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    length: int | None = None
    expect = False
    for name, value in cast(list[tuple[bytes, bytes]], headers):
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                target = value
            elif name == b":authority":
                authority = value
            continue
        if name == b"cookie":
            cookies.append(value)  # RFC 9113 §8.2.3: crumbs are joined again
            continue
        if name == b"host":
            host = value
        elif name == b"content-length" and value.isdigit():
            length = int(value)
        elif name == b"expect" and value.lower() == b"100-continue":
            expect = True
        fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    if host is None and authority is not None:
        host = authority
        fields.insert(0, (b"host", authority))
    path, _, query = target.partition(b"?")
    return RequestHead(
        method=method.decode("ascii", "replace"),
        target=target,
        path=path,
        query=query,
        http_version="2.0",
        headers=fields,
        keep_alive=True,
        content_length=None if ended else length,
        chunked=not ended and length is None,
        expect_continue=expect and not ended,
        host=host,
    )


class Stream:
    """One HTTP/2 stream: the pipeline's ``Front`` for the request it carries."""

    __slots__ = (
        "conn",
        "id",
        "listen",
        "scheme",
        "number",
        "peer_ip",
        "peer_port",
        "local_ip",
        "local_port",
        "defaults",
        "requests",
        "must_close",
        "reset",
        "complete",
        "body",
        "task",
        "cycle",
        "answering",
        "answer",
        "_window_waiter",
    )

    def __init__(self, conn: Http2Connection, stream_id: int, head: RequestHead) -> None:
        self.conn = conn
        self.id = stream_id
        self.listen = conn.listen
        self.scheme = conn.listen.scheme
        self.number = conn.number
        self.peer_ip = conn.peer_ip
        self.peer_port = conn.peer_port
        self.local_ip = conn.local_ip
        self.local_port = conn.local_port
        self.defaults = conn.defaults
        self.requests = 0  # keepalive_requests counts streams per connection (conn.requests)
        self.must_close = False
        self.reset = False  # by either side: nothing more may be sent on it
        self.complete = False  # the whole response went out
        self.body = StreamBody(self, head.expect_continue)
        self.task: asyncio.Task[None] | None = None
        self.cycle: RequestCycle | None = None
        self.answering = False  # Pipeline.answer_now is writing its answer (write() takes it)
        self.answer = b""
        self._window_waiter: asyncio.Future[None] | None = None

    # -- Front ---------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.reset or self.conn.closed

    def write(self, data: bytes) -> None:
        if not self.answering:
            raise RuntimeError("an HTTP/2 stream takes frames, not HTTP/1 bytes")
        self.answer += data

    def new_body(self, head: RequestHead, timeout: float) -> RequestBodyReader:
        self.body.timeout = timeout
        return self.body

    def new_response(
        self, request: Request, keep_alive: bool, send_timeout: float
    ) -> ResponseWriter:
        return StreamResponse(self, request.method == "HEAD", send_timeout)

    def set_body_limit(self, limit: int | None) -> None:
        self.body.limit = limit

    # -- the connection's side -----------------------------------------------------

    def lost(self) -> None:
        """The client reset the stream or the connection is gone."""
        self.wake_window()
        self.body.wake()
        task, cycle = self.task, self.cycle
        if task is not None and not task.done():
            if cycle is not None:
                cycle.client_gone = True
            if cycle is None or not cycle.ignores_client_abort():
                task.cancel()

    def wake_window(self) -> None:
        waiter = self._window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_window(self, timeout: float) -> None:
        waiter = self.conn.loop.create_future()
        self._window_waiter = waiter
        try:
            async with asyncio.timeout(timeout or None):
                await waiter
        except TimeoutError:
            raise self.timed_out("client timed out while sending response to client") from None
        finally:
            self._window_waiter = None

    def timed_out(self, what: str) -> ClientGone:
        """``send_timeout`` expired: log it, reset the stream, and say so to the caller."""
        self.conn.log("info", f"{what} (stream {self.id})")
        if not self.reset:
            self.reset = True
            self.conn._reset(self.id, ErrorCodes.CANCEL)
            self.conn.schedule_flush()
        return ClientGone("send_timeout expired")


class StreamBody(RequestBodyReader):
    """A stream's request body, as the handlers read it (``edge.exchange.RequestBody``).

    DATA frames are queued as they arrive and acknowledged to the client
    (window updates) as the handler takes them: the stream's window is what
    bounds the bytes held here.  ``read``, ``read_all`` (with its spooling),
    ``discard`` and ``cleanup`` are ``RequestBodyReader``'s, over ``_pull``
    and ``_wait`` below.
    """

    __slots__ = (
        "_stream",
        "_chunks",
        "_sizes",
        "_ended",
        "_waiter",
        "_expect",
        "timeout",
        "limit",
        "unacknowledged",
    )

    def __init__(self, stream: Stream, expect_continue: bool) -> None:
        self._stream = stream
        self._chunks: list[bytes] = []
        self._sizes: list[int] = []  # flow-controlled size of each chunk (padding included)
        self._ended = False  # END_STREAM arrived
        self._waiter: asyncio.Future[None] | None = None
        self._expect = expect_continue
        self.timeout = 60.0
        self.limit: int | None = None  # client_max_body_size, for a body without length
        self.unacknowledged = 0  # received and not yet handed back as window
        # RequestBodyReader's own state, which its read/read_all/cleanup use.
        self._length: int | None = None
        self._pending = b""
        self._done = False
        self._continue_sent = False
        self.received = 0
        self._temp_paths: list[str] = []

    @property
    def ended(self) -> bool:
        return self._ended

    def feed(self, data: bytes, flow_controlled: int) -> None:
        self._chunks.append(data)
        self._sizes.append(flow_controlled)
        self.unacknowledged += flow_controlled
        self.wake()

    def finish(self) -> None:
        self._ended = True
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pull(self) -> bytes | None:
        if self._chunks:
            data = self._chunks.pop(0)
            size = self._sizes.pop(0)
            stream = self._stream
            if size:
                self.unacknowledged -= size
                conn = stream.conn
                if not stream.closed:
                    conn.h2.acknowledge_received_data(size, stream.id)
                    conn.schedule_flush()
            self.received += len(data)
            if self.limit and self.received > self.limit:
                self._done = True
                stream.must_close = True
                raise ClientError(
                    f"client intended to send too large body: {self.received} bytes",
                    status=413,
                    level="error",
                )
            return data
        if self._ended:
            self._done = True
            if self._length is None:
                self._length = self.received
            return b""
        if self._stream.closed:
            self._done = True
            raise ClientGone("client reset the stream while sending the body")
        return None

    async def _wait(self) -> None:
        stream = self._stream
        if self._expect and not self._continue_sent:
            self._continue_sent = True
            stream.conn.h2.send_headers(stream.id, [(b":status", b"100")])
            stream.conn.schedule_flush()
        waiter = stream.conn.loop.create_future()
        self._waiter = waiter
        try:
            async with asyncio.timeout(self.timeout or None):
                await waiter
        except TimeoutError:
            self._done = True
            stream.must_close = True
            raise ClientError(
                "client timed out while reading client request body", status=408
            ) from None
        finally:
            self._waiter = None


class StreamResponse(ResponseWriter):
    """``edge.exchange.ResponseSink`` for one stream: HEADERS and DATA frames.

    The same contract as ``edge.writer.ResponseWriter``: the handler's
    ``Content-Length`` is kept (and enforced: a longer body is cut, a shorter
    one resets the stream), ``Server`` and ``Date`` are added, connection
    fields are dropped (HTTP/2 has none), names go out lower-case.
    """

    __slots__ = ("_stream",)

    def __init__(self, stream: Stream, no_body: bool, send_timeout: float) -> None:
        self._stream = stream
        self._send_timeout = send_timeout
        self.status = 0
        self.started = False
        self.finished = False
        self.keep_alive = True  # not ours to decide: the connection lives on
        self.no_body = no_body  # a HEAD request
        self.chunked = False
        self.remaining: int | None = None
        self.body_bytes = 0
        self.on_last_bytes: Callable[[], None] | None = None

    async def send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> None:
        if self.started:
            raise RuntimeError("the response head was already sent")
        stream = self._stream
        if stream.closed:
            raise ClientGone("client closed the connection")
        self.started = True
        self.status = status
        conn = stream.conn
        out = [(b":status", b"%d" % status)]
        own_server = own_date = False
        for name, value in headers:
            lowered = name.lower()
            if lowered in _CONNECTION_SPECIFIC:
                continue
            if lowered == b"content-length":
                self.remaining = int(value)
            elif lowered == b"server":
                own_server = True
            elif lowered == b"date":
                own_date = True
            out.append((lowered, value))
        if not own_server:
            out.insert(1, (b"server", b"edge"))
        if not own_date:
            out.insert(2 if not own_server else 1, (b"date", conn.state.http_date()))
        if self.no_body or status in _NO_BODY_STATUSES or status < 200:
            self.no_body = True
            self.remaining = None
        try:
            conn.h2.send_headers(stream.id, out)
        except h2.exceptions.StreamClosedError:
            raise ClientGone("client reset the stream") from None
        conn.schedule_flush()

    async def send(self, data: bytes) -> None:
        if not self.started or self.finished:
            raise RuntimeError("send() outside of a started, unfinished response")
        if not data or self.no_body:
            return
        if self.remaining is not None:
            if len(data) > self.remaining:
                data = data[: self.remaining]  # more than its own Content-Length: cut
                if not data:
                    return
            self.remaining -= len(data)
            if not self.remaining:
                self._last_bytes()
        await self._send_data(data)

    async def _send_data(self, data: bytes) -> None:
        stream = self._stream
        conn = stream.conn
        connection = conn.h2
        timeout = self._send_timeout
        view = memoryview(data)
        while view:
            if stream.closed:
                raise ClientGone("client closed the stream")
            try:
                window = connection.local_flow_control_window(stream.id)
            except h2.exceptions.StreamClosedError:
                raise ClientGone("client reset the stream") from None
            if window <= 0:
                conn.schedule_flush()
                await stream.wait_window(timeout)
                continue
            size = min(len(view), window, conn.frame_size, connection.max_outbound_frame_size)
            connection.send_data(stream.id, bytes(view[:size]))
            view = view[size:]
            self.body_bytes += size
        conn.schedule_flush()
        await conn.drain(timeout, stream)

    async def sendfile(self, file: object, offset: int, count: int) -> None:
        if not self.started or self.finished:
            raise RuntimeError("sendfile() outside of a started, unfinished response")
        if self.no_body or count <= 0:
            return
        if self.remaining is not None:
            count = min(count, self.remaining)
            self.remaining -= count
        fd = file if isinstance(file, int) else file.fileno()  # type: ignore[attr-defined]
        stream = self._stream
        conn = stream.conn
        while count > 0:
            if stream.closed:
                raise ClientGone("client closed the stream")
            try:
                window = conn.h2.local_flow_control_window(stream.id)
            except h2.exceptions.StreamClosedError:
                raise ClientGone("client reset the stream") from None
            if window <= 0:
                conn.schedule_flush()
                await stream.wait_window(self._send_timeout)
                continue
            # Read no more than the client lets us send: a stream holds one window.
            piece = min(count, FILE_PIECE, max(window, conn.frame_size))
            data = await conn.loop.run_in_executor(None, os.pread, fd, piece, offset)
            if not data:
                raise ResponseAborted("the file shrank while it was being sent")
            offset += len(data)
            count -= len(data)
            if not count and self.remaining == 0:
                self._last_bytes()
            await self._send_data(data)

    async def end(self) -> None:
        if self.finished:
            return
        if not self.started:
            raise RuntimeError("end() before send_head()")
        if self.remaining:
            raise ResponseAborted(
                f"the response ended {self.remaining} bytes short of its Content-Length"
            )
        self.finished = True
        self._last_bytes()
        stream = self._stream
        try:
            stream.conn.h2.end_stream(stream.id)
        except h2.exceptions.StreamClosedError:
            raise ClientGone("client reset the stream") from None
        stream.conn.schedule_flush()

    async def switch_protocols(self, headers: list[tuple[bytes, bytes]]) -> NoReturn:
        # RFC 9113 §8.6: HTTP/2 has no 101 (and no Upgrade header reaches us over it).
        raise UpstreamError("upstream switched protocols (101), which HTTP/2 cannot carry")

    async def send_error(self, status: int, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        body = special_response_body(status, reason_phrase(status))
        await self.send_head(
            status,
            [
                (b"content-type", b"text/html"),
                (b"content-length", str(len(body)).encode()),
                *((name.lower(), value) for name, value in headers),
            ],
        )
        await self.send(body)
        await self.end()
