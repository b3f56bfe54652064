"""HTTP/1.x response parsing for a proxy: llhttp checks the head, we frame the body.

Theory of operation
-------------------
The same shape as ``RequestParser``: ``feed(data)`` (``b""`` is EOF), then
``next_event()`` until ``NEED_DATA``.  One response gives one
``ResponseHead``, zero or more ``Data`` and one ``EndOfMessage``.  A parser
reads one response; a pooled keep-alive connection makes a new one per
request, which is cheap and means no state leaks from one exchange into the
next.

We find the end of the head with ``bytes.find`` and hand llhttp exactly the
head (httptools' ``HttpResponseParser``), never the body: llhttp cannot know
that a response to HEAD has no body, and body framing is ours anyway so that
a response read to EOF, a ``Content-Length`` one and a chunked one all end
with an ``EndOfMessage`` at a byte we know.

Interim ``1xx`` heads (``100 Continue``, ``103 Early Hints``) are read and
dropped: a proxy that did not ask for them has nothing to do with them.

uwsgi peers answer with raw, unframed HTTP and may leave out the status line
entirely, CGI style (``allow_no_status_line=True``).  As nginx does
(``ngx_http_uwsgi_process_status_line``), such a head gets its status from a
``Status:`` header (which is removed), else ``302`` when it has a
``Location``, else ``200``; its body is bounded by ``Content-Length`` or read
to EOF.

Header names keep the upstream's spelling (a proxy relays them as sent);
values lose surrounding whitespace.  Errors are ``ResponseError`` subclasses
with ``status_hint`` 502, which is what the proxy answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import httptools

from httpproto.chunked import ChunkedDecoder
from httpproto.errors import HttpProtocolError
from httpproto.parser import NEED_DATA, Data, EndOfMessage, _Sentinel

__all__ = [
    "NEED_DATA",
    "Data",
    "EndOfMessage",
    "IncompleteResponse",
    "ResponseError",
    "ResponseHead",
    "ResponseHeadTooLarge",
    "ResponseParser",
]


class ResponseError(HttpProtocolError):
    """The upstream's response cannot be relayed (nginx: "upstream sent invalid header")."""

    status_hint = 502


class IncompleteResponse(ResponseError):
    """The upstream closed the connection before the response was complete.

    nginx's "upstream prematurely closed connection"; ``received`` is how many
    bytes of the response had arrived (0: the peer hung up without a word).
    """

    def __init__(self, message: str, received: int) -> None:
        super().__init__(message)
        self.received = received


class ResponseHeadTooLarge(ResponseError):
    """The head exceeds ``max_header_size`` (nginx: "upstream sent too big header")."""


Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class ResponseHead:
    """A parsed status line and header block.

    ``keep_alive`` says the connection may carry another request once this
    response has been read to its end: HTTP/1.1 without ``Connection: close``
    (or 1.0 with ``keep-alive``) and a body that does not end at EOF.
    """

    status: int
    reason: bytes
    http_version: str
    headers: Headers
    content_length: int | None
    chunked: bool
    keep_alive: bool

    def header(self, name: bytes) -> bytes | None:
        """First value of a header (``name`` lower-case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


Event = ResponseHead | Data | EndOfMessage | _Sentinel

_END_OF_MESSAGE: Final = EndOfMessage()

_HEAD: Final = 0
_LENGTH_BODY: Final = 1
_CHUNKED_BODY: Final = 2
_EOF_BODY: Final = 3
_END: Final = 4
_DONE: Final = 5

_STATUS_HEADER: Final = re.compile(rb"([1-5][0-9]{2})(?:[ \t]+(.*))?")
_CGI_STATUS_LINE: Final = b"HTTP/1.0 200 OK\r\n"
_HTTP_PREFIX: Final = b"HTTP/"
_VERSIONS: Final = {(1, 1): "1.1", (1, 0): "1.0"}


class _ChunkErrors:
    """What a malformed chunked upstream body raises (see ``httpproto.chunked``)."""

    __slots__ = ()

    def missing_crlf(self) -> ResponseError:
        return ResponseError("upstream sent chunk data not followed by CRLF")

    def unterminated_size_line(self) -> ResponseError:
        return ResponseError("upstream sent an invalid chunk size line")

    def size_line_too_long(self) -> ResponseError:  # strict mode only: not ours
        return ResponseError("upstream sent an invalid chunk size line")

    def invalid_size_line(self, line: bytes) -> ResponseError:
        return ResponseError(f"upstream sent invalid chunk size line {line!r}")

    def extensions_too_large(self) -> ResponseError:  # no max_extensions here
        return ResponseError("upstream sent too large chunk extensions")

    def body_too_large(self, limit: int) -> ResponseError:  # no max_body here
        return ResponseError(f"upstream sent a chunked body over {limit} bytes")

    def trailers_too_large(self, limit: int) -> ResponseError:
        return ResponseError("upstream sent too large chunked trailers")

    def bare_lf_in_trailers(self) -> ResponseError:  # strict mode only: not ours
        return ResponseError("upstream sent a bare LF in chunked trailers")


_CHUNK_ERRORS: Final = _ChunkErrors()


class _HeadCollector:
    """httptools callback target (a separate object: no parser <-> callback cycle)."""

    __slots__ = ("reason", "headers", "complete")

    def __init__(self) -> None:
        self.reason = b""
        self.headers: Headers = []
        self.complete = False

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        self.complete = True


class ResponseParser:
    """Incremental parser for one HTTP/1.x response from an upstream.

    ``head_request``: the request was HEAD, so no body follows whatever the
    headers say.  ``allow_no_status_line``: accept CGI-style heads (uwsgi).
    ``max_header_size`` bounds the head (nginx ``proxy_buffer_size``).
    """

    __slots__ = (
        "head_request",
        "allow_no_status_line",
        "max_header_size",
        "bytes_received",
        "_buf",
        "_eof",
        "_state",
        "_error",
        "_searched",
        "_remaining",
        "_chunked",
        "_keep_alive",
        "allow_upgrade",
    )

    def __init__(
        self,
        *,
        head_request: bool = False,
        allow_no_status_line: bool = False,
        max_header_size: int = 64 * 1024,
        allow_upgrade: bool = False,
    ) -> None:
        self.head_request = head_request
        self.allow_no_status_line = allow_no_status_line
        # A 101 is a final head (the request asked to upgrade): what follows it is the
        # new protocol's, taken with ``take_rest``.
        self.allow_upgrade = allow_upgrade
        self.max_header_size = max_header_size
        self.bytes_received = 0  # every byte fed, for "closed before/after any byte" decisions
        self._buf = b""
        self._eof = False
        self._state = _HEAD
        self._error: ResponseError | None = None
        self._searched = 0  # how far the head buffer was searched for its end
        self._remaining = 0
        self._chunked: ChunkedDecoder | None = None
        self._keep_alive = False

    # -- public API ------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes read from the upstream; ``b""`` means it closed its side."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("ResponseParser.feed() called with data after EOF")
        if type(data) is not bytes:
            data = bytes(data)
        self.bytes_received += len(data)
        self._buf = self._buf + data if self._buf else data

    def next_event(self) -> Event:
        """The next event, or ``NEED_DATA``; raises only ``ResponseError`` subclasses."""
        if self._error is not None:
            raise self._error
        try:
            state = self._state
            if state == _HEAD:
                return self._next_head()
            if state == _LENGTH_BODY:
                return self._next_length_body()
            if state == _EOF_BODY:
                return self._next_eof_body()
            if state == _CHUNKED_BODY:
                return self._next_chunked_body()
            if state == _END:
                self._state = _DONE
                return _END_OF_MESSAGE
            return NEED_DATA
        except ResponseError as exc:
            self._error = exc
            self._buf = b""
            raise

    @property
    def complete(self) -> bool:
        """The ``EndOfMessage`` has been returned."""
        return self._state == _DONE

    @property
    def reusable(self) -> bool:
        """The connection may carry another request: the response ended cleanly,
        allowed keep-alive, and the upstream sent nothing past its end."""
        return self._state == _DONE and self._keep_alive and not self._buf and not self._eof

    # -- head ------------------------------------------------------------------

    def _next_head(self) -> Event:
        while True:
            buf = self._buf
            if not buf:
                if self._eof:
                    raise IncompleteResponse(
                        "upstream closed the connection before sending a response head",
                        self.bytes_received,
                    )
                return NEED_DATA
            cgi = False
            if buf[:5] != _HTTP_PREFIX:
                if len(buf) < 5 and _HTTP_PREFIX.startswith(buf) and not self._eof:
                    return NEED_DATA  # could still become "HTTP/"
                if not self.allow_no_status_line:
                    raise ResponseError(f"upstream sent no valid HTTP status line: {buf[:64]!r}")
                cgi = True
            if cgi and buf[:2] == b"\r\n":
                end = 2  # a CGI head with no header at all
            else:
                start = max(self._searched - 3, 0)
                index = buf.find(b"\r\n\r\n", start)
                if index < 0:
                    self._searched = len(buf)
                    if len(buf) > self.max_header_size:
                        raise ResponseHeadTooLarge(
                            f"upstream sent too big header (over {self.max_header_size} bytes)"
                        )
                    if self._eof:
                        raise IncompleteResponse(
                            "upstream closed the connection in the middle of the response head",
                            self.bytes_received,
                        )
                    return NEED_DATA
                end = index + 4
            if end > self.max_header_size:
                raise ResponseHeadTooLarge(
                    f"upstream sent too big header ({end} bytes, limit {self.max_header_size})"
                )
            head_bytes, self._buf = buf[:end], buf[end:]
            self._searched = 0
            head = self._parse_head(head_bytes, cgi)
            if 100 <= head.status < 200 and head.status != 101:
                continue  # interim response: drop it and read the final one
            return head

    def _parse_head(self, data: bytes, cgi: bool) -> ResponseHead:
        collector = _HeadCollector()
        llhttp = httptools.HttpResponseParser(collector)
        try:
            llhttp.feed_data(_CGI_STATUS_LINE + data if cgi else data)
        except httptools.HttpParserUpgrade:
            if not self.allow_upgrade:
                raise ResponseError(
                    "upstream switched protocols (101), which is not proxied"
                ) from None
        except httptools.HttpParserError as exc:
            raise ResponseError(f"upstream sent invalid header: {exc}") from None
        if not collector.complete:
            raise ResponseError("upstream sent an incomplete response head")
        status = llhttp.get_status_code()
        reason = collector.reason
        headers = collector.headers
        version = "1.0" if cgi else _VERSIONS.get(_version_tuple(llhttp.get_http_version()), "")
        if not version and self.allow_no_status_line and llhttp.get_http_version() == "2.0":
            # uWSGI writes the request's SERVER_PROTOCOL in its status line: HTTP/2.0 for a
            # request that reached the edge over HTTP/2 (nginx accepts it too).  The
            # uwsgi connection itself has HTTP/1.1's semantics.
            version = "1.1"
        if not version:
            raise ResponseError(f"upstream sent unsupported HTTP/{llhttp.get_http_version()}")
        if status == 101 and (cgi or not self.allow_upgrade):
            if cgi:
                raise ResponseError("a uwsgi upstream cannot switch protocols (101)")
            raise ResponseError(
                "upstream switched protocols (101) though the client did not ask to upgrade"
            )

        content_length: int | None = None
        codings: list[bytes] = []
        close = keep = False
        status_header: bytes | None = None
        location = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                # llhttp refused repeats, signs and junk, and CL together with TE.
                content_length = int(value)
            elif lowered == b"transfer-encoding":
                codings.extend(c.strip().lower() for c in value.split(b",") if c.strip())
            elif lowered == b"connection":
                tokens = {token.strip().lower() for token in value.split(b",")}
                close = close or b"close" in tokens
                keep = keep or b"keep-alive" in tokens
            elif cgi and lowered == b"status":
                status_header = value
            elif cgi and lowered == b"location":
                location = True
        if cgi:
            if status_header is not None:
                match = _STATUS_HEADER.fullmatch(status_header)
                if match is None:
                    raise ResponseError(f"upstream sent invalid Status header {status_header!r}")
                status = int(match.group(1))
                reason = match.group(2) or b""
                headers = [(n, v) for n, v in headers if n.lower() != b"status"]
            elif location:
                status, reason = 302, b"Found"
            else:
                status, reason = 200, b"OK"

        # RFC 9112 §6.3: chunked last means chunked; any other coding means the
        # body runs to EOF; 1xx/204/304 and answers to HEAD have none at all.
        chunked = bool(codings) and codings[-1] == b"chunked"
        if codings:
            content_length = None
        if self.head_request or status < 200 or status in (204, 304):
            self._state = _END
        elif chunked:
            self._state = _CHUNKED_BODY
            # Upstreams are semi-trusted and what we send on is re-framed by the
            # front: refuse garbage, not everything a client would be refused for.
            self._chunked = ChunkedDecoder(
                _CHUNK_ERRORS, strict=False, max_trailers=self.max_header_size
            )
        elif codings or content_length is None:
            self._state = _EOF_BODY
        elif content_length:
            self._state = _LENGTH_BODY
            self._remaining = content_length
        else:
            self._state = _END
        keep_alive = (
            not cgi and not close and (version == "1.1" or keep) and self._state != _EOF_BODY
        )
        self._keep_alive = keep_alive
        return ResponseHead(status, reason, version, headers, content_length, chunked, keep_alive)

    def take_rest(self) -> bytes:
        """After a 101: the bytes that followed its head (the new protocol's)."""
        rest, self._buf = self._buf, b""
        self._state = _END
        return rest

    # -- body ------------------------------------------------------------------

    def _next_length_body(self) -> Event:
        buf = self._buf
        if not buf:
            if self._eof:
                raise IncompleteResponse(
                    f"upstream closed the connection with {self._remaining} body bytes missing",
                    self.bytes_received,
                )
            return NEED_DATA
        remaining = self._remaining
        if len(buf) <= remaining:
            data, self._buf = buf, b""
        else:
            # More than Content-Length: nginx ignores the excess and won't reuse the connection.
            data, self._buf = buf[:remaining], buf[remaining:]
        self._remaining = remaining - len(data)
        if not self._remaining:
            self._state = _END
        return Data(data)

    def _next_eof_body(self) -> Event:
        buf = self._buf
        if buf:
            self._buf = b""
            return Data(buf)
        if self._eof:
            self._state = _DONE
            return _END_OF_MESSAGE
        return NEED_DATA

    def _next_chunked_body(self) -> Event:
        buf = self._buf
        decoder = self._chunked
        assert decoder is not None
        # Trailers are dropped (nginx does not pass them either).
        data, pos, done = decoder.decode(buf)
        if done:
            self._chunked = None
            self._state = _END
        self._buf = buf[pos:] if pos < len(buf) else b""
        if data:
            return Data(data)
        if done:
            self._state = _DONE
            return _END_OF_MESSAGE
        if self._eof:
            raise IncompleteResponse(
                "upstream closed the connection in the middle of a chunked body",
                self.bytes_received,
            )
        return NEED_DATA


def _version_tuple(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    try:
        return int(major), int(minor)
    except ValueError:
        return (0, 0)
