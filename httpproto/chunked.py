"""The chunked transfer coding (RFC 9112 §7.1), decoded sans-IO for both parsers.

``ChunkedDecoder.decode(buf)`` walks every complete piece of ``buf`` and
returns ``(data, pos, done)``: the chunk data found, joined (a body sent in
many tiny chunks should not cost an event per chunk), how many bytes were
consumed, and whether the last chunk and the trailer section have been read.  The caller keeps ``buf[pos:]`` and calls again once more bytes arrive.
After ``done``, ``trailers`` holds the raw trailer section up to and with its
blank line (``b""``: no fields), for the caller to check or drop.

The two sides differ in how much they trust the peer.  ``strict`` is for
requests from clients: a tight chunk-size grammar, no bare LF, a cap on the
size line even once complete, and on the whole trailer section.  Upstreams
are semi-trusted and what we relay is re-framed anyway, so without ``strict``
the decoder refuses garbage but no more.

Each side names its own errors (a 400 for a client, a 502 "upstream sent ..."
for an upstream), so the decoder raises whatever its ``ChunkedErrors`` builds.
"""

from __future__ import annotations

import re
from typing import Final, Protocol

__all__ = ["ChunkedDecoder", "ChunkedErrors"]

# chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ).
# No whitespace after a bare size (llhttp's default too): that is how
# parsers disagree and requests get smuggled.  16 hex digits fit in 64 bits.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_STRICT_LINE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,16})((?:[ \t]*;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*)"
    % (_TOKEN, _TOKEN, _QUOTED)
)
# From an upstream: hex size, optional whitespace and extensions.
_LENIENT_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*((?:;[^\r\n]*)?)")
_MAX_CHUNK_LINE: Final = 4096

# Decoder states.
_SIZE: Final = 0
_DATA: Final = 1
_CRLF: Final = 2
_TRAILERS: Final = 3
_DONE: Final = 4


class ChunkedErrors(Protocol):
    """Builds the exception for each way a chunked body can be malformed."""

    def missing_crlf(self) -> Exception:
        """Chunk data not followed by CRLF."""

    def unterminated_size_line(self) -> Exception:
        """No CRLF within the size-line limit (or, strict, a bare LF before it)."""

    def size_line_too_long(self) -> Exception:
        """Strict: a complete size line over the limit."""

    def invalid_size_line(self, line: bytes) -> Exception:
        """A size line that does not parse; ``line`` is at most 64 bytes of it."""

    def extensions_too_large(self) -> Exception:
        """The chunk extensions of the message exceed ``max_extensions``."""

    def body_too_large(self, limit: int) -> Exception:
        """The announced chunk sizes exceed ``max_body``."""

    def trailers_too_large(self, limit: int) -> Exception:
        """The trailer section exceeds ``max_trailers``."""

    def bare_lf_in_trailers(self) -> Exception:
        """Strict: an LF without its CR in the trailer section."""


class ChunkedDecoder:
    """Incremental decoder for one chunked body.

    ``max_trailers`` bounds the trailer section; ``max_extensions`` (``None``:
    unlimited) the chunk extensions of the whole message, which are ignored yet
    cost work to skip, so tiny chunks with large extensions cannot waste time
    (node CVE-2024-22019).  ``decode``'s ``max_body`` bounds the sum of the
    chunk sizes, checked when a chunk is announced; it is an argument because
    a server may only know it once the head has been routed.
    """

    __slots__ = (
        "trailers",
        "_errors",
        "_strict",
        "_line",
        "_max_trailers",
        "_max_extensions",
        "_state",
        "_remaining",
        "_body_size",
        "_ext_size",
    )

    def __init__(
        self,
        errors: ChunkedErrors,
        *,
        strict: bool,
        max_trailers: int,
        max_extensions: int | None = None,
    ) -> None:
        self.trailers = b""
        self._errors = errors
        self._strict = strict
        self._line = _STRICT_LINE if strict else _LENIENT_LINE
        self._max_trailers = max_trailers
        self._max_extensions = max_extensions
        self._state = _SIZE
        self._remaining = 0
        self._body_size = 0
        self._ext_size = 0

    def decode(self, buf: bytes, max_body: int | None = None) -> tuple[bytes, int, bool]:
        """Decode what ``buf`` holds: ``(chunk data, bytes consumed, body complete)``."""
        size = len(buf)
        if not size:
            return b"", 0, self._state == _DONE
        pos = 0
        parts: list[bytes] = []
        while pos < size:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, size - pos)
                parts.append(buf if take == size else buf[pos : pos + take])
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CRLF
            elif state == _CRLF:
                if size - pos < 2:
                    if buf[pos] != 13:
                        raise self._errors.missing_crlf()
                    break
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    raise self._errors.missing_crlf()
                pos += 2
                self._state = _SIZE
            elif state == _SIZE:
                pos = self._size_line(buf, pos, max_body)
                if pos < 0:
                    pos = -pos - 1
                    break
            elif state == _TRAILERS:
                pos = self._trailer_section(buf, pos)
                if pos < 0:
                    pos = -pos - 1
                    break
                self._state = _DONE
                break
            else:
                break
        if not parts:
            return b"", pos, self._state == _DONE
        return parts[0] if len(parts) == 1 else b"".join(parts), pos, self._state == _DONE

    def _size_line(self, buf: bytes, pos: int, max_body: int | None) -> int:
        """Parse a chunk-size line at ``pos``; the new position, or ``-pos - 1`` to wait."""
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > _MAX_CHUNK_LINE or (self._strict and buf.find(b"\n", pos) >= 0):
                raise self._errors.unterminated_size_line()
            return -pos - 1
        if self._strict and eol - pos > _MAX_CHUNK_LINE:
            raise self._errors.size_line_too_long()
        match = self._line.fullmatch(buf, pos, eol)
        if match is None:
            raise self._errors.invalid_size_line(buf[pos:eol][:64])
        if self._max_extensions is not None:
            extensions = match.end(2) - match.start(2)
            if extensions:
                self._ext_size += extensions
                if self._ext_size > self._max_extensions:
                    raise self._errors.extensions_too_large()
        chunk_size = int(match.group(1), 16)
        if chunk_size:
            self._body_size += chunk_size
            if max_body is not None and self._body_size > max_body:
                raise self._errors.body_too_large(max_body)
            self._remaining = chunk_size
            self._state = _DATA
        else:
            self._state = _TRAILERS
        return eol + 2

    def _trailer_section(self, buf: bytes, pos: int) -> int:
        """Find the end of the trailer section; new position, or ``-pos - 1`` to wait."""
        if buf.startswith(b"\r\n", pos):
            return pos + 2
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if len(buf) - pos > self._max_trailers:
                raise self._errors.trailers_too_large(self._max_trailers)
            if self._strict and buf.count(b"\n", pos) != buf.count(b"\r\n", pos):
                raise self._errors.bare_lf_in_trailers()
            return -pos - 1
        end += 4
        if self._strict and end - pos > self._max_trailers:
            raise self._errors.trailers_too_large(self._max_trailers)
        self.trailers = buf[pos:end]
        return end
