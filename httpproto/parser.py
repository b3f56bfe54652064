"""HTTP/1.x request parsing: llhttp (via httptools) checks each head, we frame the messages.

Theory of operation
-------------------
Shaped like h11: ``feed(data)`` any number of times (``b""`` means EOF), then
call ``next_event()`` until it returns ``NEED_DATA``.  Each request gives one
``RequestHead``, zero or more ``Data`` (body bytes, already de-chunked) and one
``EndOfMessage``; pipelined requests follow in order.  ``CLOSED`` means no
other request will come: EOF between messages, or the last request was not
keep-alive, so the connection must close and bytes after it are dropped.

httptools parses all it is given and cannot stop at a message boundary: it
has no pause and reports no offsets.  So llhttp never sees more than one head.
We find the blank line ourselves with ``bytes.find``, which runs in C.  llhttp
gets the head bytes as they arrive, so garbage such as a TLS hello is refused
at once.  We frame the body ourselves: ``Content-Length`` by slicing, chunked
with the strict mode of ``httpproto.chunked``.  llhttp's strict defaults already refuse
CL+TE, duplicate or malformed CL, TE not ending in chunked, obs-fold, bare LF
or CR, NUL/CTL in values and bad tokens; each has a corpus file.  We add what
llhttp lacks:
- size limits;
- versions other than 1.0/1.1 (llhttp accepts 0.9 and 2.0);
- TE on HTTP/1.0;
- codings before ``chunked`` (501);
- raw UTF-8 in the request target.  llhttp refuses it, but nginx and gunicorn
  accept it, so llhttp sees those bytes as ``x`` and we keep the raw target.

The work is lazy: ``feed`` only buffers and ``next_event`` parses.  So an
error in request N+1 is raised only after request N's events.  A server may
stop after a head (to refuse it, or to send ``100 Continue``) and go on feeding
later.  Once it has raised, the parser is dead and raises the same error again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import httptools

from httpproto.chunked import ChunkedDecoder
from httpproto.errors import (
    BadRequest,
    BodyTooLarge,
    HeaderTooLarge,
    HttpProtocolError,
    UnsupportedTransferEncoding,
    UriTooLong,
)


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
CLOSED: Final = _Sentinel("CLOSED")

Headers = list[tuple[bytes, bytes]]


# RequestHead and Data are not frozen: a frozen dataclass __init__ pays an
# object.__setattr__ per field, which shows on the per-request hot path.
@dataclass(slots=True)
class RequestHead:
    """A parsed request line and header block.

    ``target`` is the raw request-target; ``path`` and ``query`` are split from
    it (for absolute-form, after the authority) and still percent-encoded.
    ``headers`` keep their order and repeats; names are lowercased and values
    have surrounding whitespace removed (RFC 9112 §5).
    """

    method: str
    target: bytes
    path: bytes
    query: bytes
    http_version: str
    headers: Headers
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool
    host: bytes | None = None  # the Host field's value (there is at most one)


@dataclass(slots=True)
class Data:
    """A piece of the request body, de-chunked."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The body is complete; ``trailers`` holds a chunked body's trailer fields, if any."""

    trailers: tuple[tuple[bytes, bytes], ...] = ()


Event = RequestHead | Data | EndOfMessage | _Sentinel

_END_OF_MESSAGE: Final = EndOfMessage()

# Parser states (ints: compared on every next_event call).
_HEAD: Final = 0
_LENGTH_BODY: Final = 1
_CHUNKED_BODY: Final = 2
_END: Final = 3
_DONE: Final = 4

# Headers whose values decide framing or connection handling.
_NOTABLE: Final = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"connection", b"expect")
)

# llhttp accepts only ASCII in the target; we hand it these stand-ins for
# bytes >= 0x80 and take the raw target from our copy of the line.
_ASCII_STANDIN: Final = bytes(range(128)) + b"x" * 128

_VERSIONS: Final = {b"HTTP/1.1": "1.1", b"HTTP/1.0": "1.0"}

# Interned method strings, so we don't decode b"GET" on every request.
_METHODS: Final = {
    m.encode(): m
    for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}

# Trailers are checked by llhttp too: we feed it a minimal chunked request
# ending with the trailer block.
_TRAILER_PREFIX: Final = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"


class _HeadCollector:
    """httptools callback target for the head being parsed.

    It is a separate object so that llhttp -> bound method -> RequestParser
    does not form a reference cycle per connection.
    """

    __slots__ = ("headers", "notable", "complete", "field_limit")

    def __init__(self, field_limit: int) -> None:
        self.field_limit = field_limit
        self.headers: Headers = []
        self.notable: Headers = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes, _notable: frozenset[bytes] = _NOTABLE) -> None:
        # Called per header on the hot path: keep it to a few C calls.
        name = name.lower()
        # llhttp strips leading OWS but keeps trailing OWS; RFC 9112 §5 excludes both.
        value = value.rstrip(b" \t")
        if self.field_limit and len(name) + len(value) > self.field_limit:
            raise HeaderTooLarge(
                f"header {name[:64].decode('latin-1')!r} exceeds {self.field_limit} bytes"
            )
        self.headers.append((name, value))
        if name in _notable:
            self.notable.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


class _TrailerCollector:
    __slots__ = ("in_trailers", "trailers", "complete")

    def __init__(self) -> None:
        self.in_trailers = False
        self.trailers: Headers = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_trailers:
            self.trailers.append((name.lower(), value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        self.in_trailers = True

    def on_message_complete(self) -> None:
        self.complete = True


class _ChunkErrors:
    """What a malformed chunked request body raises (see ``httpproto.chunked``)."""

    __slots__ = ()

    def missing_crlf(self) -> HttpProtocolError:
        return BadRequest("chunk data not followed by CRLF")

    def unterminated_size_line(self) -> HttpProtocolError:
        return BadRequest("invalid chunk size line")

    def size_line_too_long(self) -> HttpProtocolError:
        return BadRequest("chunk size line too long")

    def invalid_size_line(self, line: bytes) -> HttpProtocolError:
        return BadRequest(f"invalid chunk size line {line!r}")

    def extensions_too_large(self) -> HttpProtocolError:
        return BadRequest("chunk extensions too large")

    def body_too_large(self, limit: int) -> HttpProtocolError:
        return BodyTooLarge(f"chunked body exceeds {limit} bytes")

    def trailers_too_large(self, limit: int) -> HttpProtocolError:
        return HeaderTooLarge(f"chunked trailers exceed {limit} bytes")

    def bare_lf_in_trailers(self) -> HttpProtocolError:
        return BadRequest("bare LF in chunked trailers")


_CHUNK_ERRORS: Final = _ChunkErrors()


def _skip_empty_lines(buf: bytes) -> bytes:
    """Drop CRLFs before a request line (RFC 9112 §2.2); a trailing lone CR is returned alone."""
    rest = buf.lstrip(b"\r\n")
    skipped = len(buf) - len(rest)
    pairs = skipped // 2
    if buf[: 2 * pairs] != b"\r\n" * pairs or (skipped % 2 and rest):
        raise BadRequest("bare CR or LF before the request line")
    if skipped % 2:
        if buf[-1] != 13:
            raise BadRequest("bare CR or LF before the request line")
        return b"\r"
    return rest


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """Path and query of a request-target (RFC 9112 §3.2); fragments are dropped."""
    if b"#" in target:
        target = target.partition(b"#")[0]
    if target[:1] != b"/":
        if target == b"*":
            return b"*", b""
        _scheme, sep, rest = target.partition(b"://")
        if not sep:
            return b"", b""  # authority-form (CONNECT host:port) has no path
        # absolute-form: the path starts after the authority; an empty one is "/".
        cut = len(rest)
        for delimiter in (b"/", b"?"):
            index = rest.find(delimiter)
            if 0 <= index < cut:
                cut = index
        target = rest[cut:]
        if target[:1] != b"/":
            target = b"/" + target
    path, _sep, query = target.partition(b"?")
    return path, query


class RequestParser:
    """Incremental parser for the requests of one HTTP/1.x connection.

    ``max_header_size`` bounds the whole head, request line included, like
    uWSGI's ``buffer-size`` (431).  ``max_line`` bounds the request line (414)
    and each header line (431).  ``max_headers`` bounds the header count (431).
    ``max_body_size`` (``None``: unlimited) is nginx's ``client_max_body_size``
    (413).  A Content-Length is checked before the head is returned, a chunked
    body as it arrives.
    """

    __slots__ = (
        "max_header_size",
        "max_headers",
        "max_line",
        "max_body_size",
        "_buf",
        "_eof",
        "_state",
        "_error",
        "_heads",
        "_llhttp",
        "_llhttp_fresh",
        "_head_size",
        "_line_done",
        "_line_raw",
        "_request_line",
        "_tail",
        "_upgrade",
        "_keep_alive",
        "_remaining",
        "_chunked",
        "_end_event",
        "_expect_pending",
    )

    def __init__(
        self,
        max_header_size: int = 8192,
        max_headers: int = 100,
        max_line: int = 8192,
        max_body_size: int | None = None,
    ) -> None:
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.max_line = max_line
        self.max_body_size = max_body_size
        self._buf = b""
        self._eof = False
        self._state = _HEAD
        self._error: HttpProtocolError | None = None
        # A header line can only break max_line on its own if max_line is below the block limit.
        self._heads = _HeadCollector(max_line if max_line < max_header_size else 0)
        self._llhttp = httptools.HttpRequestParser(self._heads)
        self._llhttp_fresh = True
        self._head_size = 0
        self._line_done = False
        self._line_raw = b""
        self._request_line = b""
        self._tail = b""
        self._upgrade = False
        self._keep_alive = True
        self._remaining = 0
        self._chunked: ChunkedDecoder | None = None
        self._end_event = _END_OF_MESSAGE
        self._expect_pending = False

    # -- public API ------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("RequestParser.feed() called with data after EOF")
        if self._state == _DONE or self._error is not None:
            return  # the connection is closing: what follows is not ours to parse
        if type(data) is not bytes:
            data = bytes(data)
        self._buf = self._buf + data if self._buf else data

    def next_event(self) -> Event:
        """The next event, or ``NEED_DATA``; raises only ``HttpProtocolError`` subclasses."""
        if self._error is not None:
            raise self._error
        try:
            state = self._state
            if state == _HEAD:
                if not self._buf and not self._eof:
                    return NEED_DATA  # between keep-alive requests: skip the call
                return self._next_head()
            if state == _LENGTH_BODY:
                return self._next_length_body()
            if state == _CHUNKED_BODY:
                return self._next_chunked_body()
            if state == _END:
                return self._end_message()
            return CLOSED
        except HttpProtocolError as exc:
            self._error = exc
            self._buf = b""
            raise

    def take_rest(self) -> bytes:
        """After a switch of protocols: the unparsed bytes (no longer HTTP), and stop."""
        rest, self._buf = self._buf, b""
        self._state = _DONE
        return rest

    @property
    def waiting_for_100_continue(self) -> bool:
        """True between a head with ``expect_continue`` and a body and its first body byte.

        A server sends ``100 Continue`` only while this holds; once body bytes
        have arrived, the client has stopped waiting (RFC 9110 §10.1.1).
        """
        return self._expect_pending and not self._buf

    # -- head ------------------------------------------------------------------

    def _next_head(self) -> Event:
        buf = self._buf
        if self._head_size == 0 and buf and buf[0] != 13 and buf[0] != 10:
            # The common case, in one piece: a whole head at the start of the buffer,
            # its request line ASCII and within the limits.  Everything else (a head
            # in several reads, CRLFs before it, a limit reached) takes the general
            # path below, which gives the same events and the same errors.
            end = buf.find(b"\r\n\r\n")
            if end > 0 and end + 4 <= self.max_header_size:
                newline = buf.find(b"\n", 0, end + 2)
                line = buf[:newline]
                if newline <= self.max_line and line.isascii():
                    if not self._llhttp_fresh:
                        # The last message left llhttp inside a body it never saw.
                        self._llhttp = httptools.HttpRequestParser(self._heads)
                        self._llhttp_fresh = True
                    end += 4
                    if end == len(buf):
                        part, self._buf = buf, b""
                    else:
                        part, self._buf = buf[:end], buf[end:]
                    self._line_done = True
                    self._request_line = line
                    self._head_size = end
                    self._feed_llhttp(part)
                    if self._heads.complete:
                        return self._finish_head()
                    if line.startswith(b"PRI * HTTP/2"):
                        raise BadRequest("HTTP/2 connection preface sent to an HTTP/1.x port")
                    raise BadRequest("request head ended without completing")
        if buf and self._head_size == 0:
            if buf[0] == 13 or buf[0] == 10:
                buf = _skip_empty_lines(buf)
                if buf == b"\r":
                    buf = b""  # half an empty line: keep it, its LF may follow
                    if not self._eof:
                        self._buf = b"\r"
                        return NEED_DATA
            if buf and not self._llhttp_fresh:
                # The last message left llhttp inside a body it never saw.
                self._llhttp = httptools.HttpRequestParser(self._heads)
                self._llhttp_fresh = True
        if not buf:
            self._buf = b""
            if not self._eof:
                return NEED_DATA
            if self._head_size == 0:
                self._state = _DONE
                return CLOSED
            raise BadRequest("connection closed in the middle of the request head")

        tail = self._tail
        end = -1
        if tail:
            # The blank line may straddle the previous feed.
            index = (tail + buf[:3]).find(b"\r\n\r\n")
            if index >= 0:
                end = index + 4 - len(tail)
        if end < 0:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                end += 4
        if end < 0 or end == len(buf):
            part, self._buf = buf, b""
        else:
            part, self._buf = buf[:end], buf[end:]

        over = self._head_size + len(part) - self.max_header_size
        if over > 0:
            # Let llhttp judge what fits first, so garbage gets 400, not 431.
            self._feed_head(part[: len(part) - over])
            raise self._too_large()
        self._feed_head(part)
        if self._heads.complete:
            return self._finish_head()
        if end >= 0:
            if self._request_line.startswith(b"PRI * HTTP/2"):
                # llhttp waits for the rest of the preface; we already know enough.
                raise BadRequest("HTTP/2 connection preface sent to an HTTP/1.x port")
            raise BadRequest("request head ended without completing")
        self._tail = part[-3:] if len(part) >= 3 else (tail + part)[-3:]
        if self._eof:
            raise BadRequest("connection closed in the middle of the request head")
        return NEED_DATA

    def _feed_head(self, part: bytes) -> None:
        """Hand llhttp the next piece of the head, keeping the raw request line for ourselves."""
        if not part:
            return
        if not self._line_done:
            newline = part.find(b"\n")
            line = part if newline < 0 else part[:newline]
            if self._line_raw or newline < 0:
                # The line spans feeds: keep what we have of it.
                self._line_raw += line
                whole_line = self._line_raw
            else:
                whole_line = line
            if not line.isascii():
                part = line.translate(_ASCII_STANDIN) + part[len(line) :]
            excess = len(whole_line) - self.max_line
            if excess > 0:
                if len(line) > excess:
                    self._feed_llhttp(part[: len(line) - excess])
                raise UriTooLong(f"request line exceeds {self.max_line} bytes")
            if newline >= 0:
                self._line_done = True
                self._request_line = whole_line
        self._head_size += len(part)
        self._feed_llhttp(part)

    def _feed_llhttp(self, part: bytes) -> None:
        try:
            self._llhttp.feed_data(part)
        except httptools.HttpParserUpgrade:
            self._upgrade = True  # llhttp paused after an Upgrade or CONNECT head
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, HttpProtocolError):
                raise cause from None  # our on_header refused a field
            raise
        except httptools.HttpParserError as exc:
            raise BadRequest(f"invalid request head: {exc}") from None

    def _too_large(self) -> HttpProtocolError:
        if not self._line_done:
            return UriTooLong(f"request line exceeds the {self.max_header_size}-byte head limit")
        return HeaderTooLarge(f"request head exceeds {self.max_header_size} bytes")

    def _finish_head(self) -> RequestHead:
        heads = self._heads
        headers = heads.headers
        notable = heads.notable
        heads.headers = []
        heads.notable = []
        heads.complete = False
        if len(headers) > self.max_headers:
            raise HeaderTooLarge(
                f"{len(headers)} header fields exceed the limit of {self.max_headers}"
            )
        # llhttp has validated the line; we split it ourselves, which is cheaper than
        # on_url plus get_http_version() and gives the raw target even when llhttp
        # was shown stand-ins for UTF-8.  "METHOD SP target SP HTTP/x.y CR".
        line = self._request_line
        method_end = line.find(b" ")
        target_end = line.rfind(b" ")
        version = _VERSIONS.get(line[target_end + 1 : -1])
        target = line[method_end + 1 : target_end]
        if version is None or not target or b" " in target or target[0] == 9:
            # llhttp takes HTTP/0.9 (no version), HTTP/2.0 (a prior-knowledge client
            # on the wrong port), RTSP, and runs of spaces (RFC 9112 §3 allows one SP).
            raise BadRequest(f"unsupported request line {line[:100]!r}")
        raw_method = line[:method_end]
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")

        content_length: int | None = None
        chunked = False
        keep_alive = version == "1.1"
        expect_continue = False
        hosts = 0
        host: bytes | None = None
        if notable:
            close = False
            keep = False
            codings: list[bytes] = []
            for name, value in notable:
                if name == b"host":
                    hosts += 1
                    host = value
                elif name == b"connection":
                    value = value.lower()
                    if value == b"keep-alive":
                        keep = True
                    elif value == b"close":
                        close = True
                    else:
                        tokens = {token.strip() for token in value.split(b",")}
                        close = close or b"close" in tokens
                        keep = keep or b"keep-alive" in tokens
                        # Should llhttp read the list differently, a fresh one next time
                        # means it cannot refuse the next request as "data after close".
                        self._llhttp_fresh = False
                elif name == b"content-length":
                    # llhttp has refused repeats, signs, lists, spaces inside and overflow.
                    content_length = int(value)
                elif name == b"transfer-encoding":
                    codings.extend(c.strip().lower() for c in value.split(b","))
                elif value.lower() == b"100-continue":  # the Expect header
                    expect_continue = version == "1.1"  # RFC 9110 §10.1.1: ignore it in 1.0
            keep_alive = not close and (keep or keep_alive)
            if keep and version == "1.0":
                self._llhttp_fresh = False  # the same caution for 1.0 keep-alive
            if codings:
                chunked = self._check_codings(codings, version, content_length)
        if hosts != 1 and (hosts or version == "1.1"):
            # RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any
            # request with several (which one would routing and the app each use?).
            raise BadRequest(
                "HTTP/1.1 request without Host" if not hosts else "several Host fields"
            )
        if self._upgrade or method == "CONNECT":
            # We never switch protocols: whatever follows may be a tunnel or
            # WebSocket frames, not HTTP, so the connection ends with this request.
            keep_alive = False
            self._upgrade = False
            self._llhttp_fresh = False
        if target[0] == 47 and b"#" not in target:  # origin-form "/...", the usual case
            path, _sep, query = target.partition(b"?")
        else:
            path, query = _split_target(target)

        self._head_size = 0
        self._line_done = False
        if self._line_raw:
            self._line_raw = b""
        self._tail = b""
        self._keep_alive = keep_alive
        if chunked:
            self._state = _CHUNKED_BODY
            max_header = self.max_header_size
            self._chunked = ChunkedDecoder(
                _CHUNK_ERRORS, strict=True, max_trailers=max_header, max_extensions=max_header
            )
            self._llhttp_fresh = False
            self._expect_pending = expect_continue
        elif content_length:
            max_body = self.max_body_size
            if max_body is not None and content_length > max_body:
                raise BodyTooLarge(f"Content-Length {content_length} exceeds {max_body} bytes")
            self._state = _LENGTH_BODY
            self._remaining = content_length
            self._llhttp_fresh = False
            self._expect_pending = expect_continue
        else:
            self._state = _END
        return RequestHead(
            method,
            target,
            path,
            query,
            version,
            headers,
            keep_alive,
            content_length,
            chunked,
            expect_continue,
            host,
        )

    @staticmethod
    def _check_codings(codings: list[bytes], version: str, content_length: int | None) -> bool:
        codings = [c for c in codings if c]  # list syntax allows empty elements (RFC 9110 §5.6.1)
        if version == "1.0":
            # RFC 9112 §6.1: TE in an HTTP/1.0 message means faulty framing.
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if content_length is not None or not codings or codings[-1] != b"chunked":
            # llhttp refuses these already; RFC 9112 §6.3 says 400 and close,
            # because without chunked last the body length cannot be known.
            raise BadRequest("Transfer-Encoding must end with chunked and exclude Content-Length")
        if len(codings) > 1:
            # The framing is sound (chunked is last) but we cannot undo the rest:
            # RFC 9112 §6.1 says 501 for a transfer coding we do not implement.
            raise UnsupportedTransferEncoding(
                f"unsupported transfer coding {b', '.join(codings[:-1]).decode('latin-1')!r}"
            )
        return True

    # -- body ------------------------------------------------------------------

    def _next_length_body(self) -> Event:
        buf = self._buf
        if not buf:
            if self._eof:
                raise BadRequest(f"connection closed with {self._remaining} body bytes missing")
            return NEED_DATA
        remaining = self._remaining
        if len(buf) <= remaining:
            data, self._buf = buf, b""
        else:
            data, self._buf = buf[:remaining], buf[remaining:]
        remaining -= len(data)
        self._remaining = remaining
        if not remaining:
            self._state = _END
        self._expect_pending = False
        return Data(data)

    def _next_chunked_body(self) -> Event:
        buf = self._buf
        decoder = self._chunked
        assert decoder is not None
        # Every complete chunk buffered comes back as one Data: a body sent
        # in many tiny chunks should not cost an event per chunk.
        data, pos, done = decoder.decode(buf, self.max_body_size)
        if done:
            self._chunked = None
            if decoder.trailers:
                self._end_event = self._parse_trailers(decoder.trailers)
            self._state = _END
        self._buf = buf[pos:] if pos < len(buf) else b""
        if data:
            self._expect_pending = False
            return Data(data)
        if done:
            return self._end_message()
        if self._eof:
            raise BadRequest("connection closed in the middle of a chunked body")
        return NEED_DATA

    def _parse_trailers(self, section: bytes) -> EndOfMessage:
        """Check the trailer fields with llhttp (the decoder found and sized the section)."""
        collector = _TrailerCollector()
        try:
            httptools.HttpRequestParser(collector).feed_data(_TRAILER_PREFIX + section)
        except httptools.HttpParserError as exc:
            raise BadRequest(f"invalid chunked trailers: {exc}") from None
        if not collector.complete:
            raise BadRequest("invalid chunked trailers")
        if len(collector.trailers) > self.max_headers:
            raise HeaderTooLarge(f"more than {self.max_headers} trailer fields")
        return EndOfMessage(tuple(collector.trailers))

    def _end_message(self) -> EndOfMessage:
        event = self._end_event
        self._end_event = _END_OF_MESSAGE
        self._expect_pending = False
        if self._keep_alive:
            self._state = _HEAD
        else:
            self._state = _DONE
            self._buf = b""
        return event
