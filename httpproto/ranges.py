"""Byte ranges (RFC 9110 §14) and multipart/byteranges bodies, as nginx answers them.

``select_ranges`` decides what a GET with ``Range`` gets, one rule for both servers:

* Range applies to GET only (§14.2: a server MUST ignore it for other
  methods, so HEAD gets the 200 head; nginx answers HEAD with a 206 head),
  only when If-Range holds, and only to a non-empty file (an empty file has
  no byte to address: the whole, empty, 200 is the only useful answer).
* The unit is ``bytes``, in any case; another unit is ignored (§14.2 MUST).
* A header that is not a valid ``ranges-specifier`` is ignored and the whole
  file is sent (§14.1.1: an invalid range-spec, e.g. ``5-3``, invalidates the
  header; nginx answers 416 instead).  Whitespace around the numbers and
  empty list elements are tolerated.
* Ranges wholly past the end are dropped; the rest are clamped to the file.
  None left: 416 with ``Content-Range: bytes */<size>``.
* nginx's guards against range abuse: more than ``max_ranges`` ranges, or
  ranges adding up to more bytes than the file (overlaps), get the whole file
  with 200.  Ranges are kept in the order asked and never merged (nginx).
* One range: a 206 with Content-Range.  Several: a 206 with a
  multipart/byteranges body (§14.6), laid out byte for byte as nginx does:
  each part is ``CRLF --boundary CRLF Content-Type CRLF Content-Range CRLF
  CRLF data``, and the body ends ``CRLF --boundary-- CRLF``, so its length is
  known before the first byte is sent.

Nothing here does I/O: the servers walk ``MultipartByteranges.segments()``,
sending the part heads as bytes and the data from the file (sendfile).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from httpproto.conditional import if_range_holds

__all__ = [
    "MAX_RANGES",
    "UNSATISFIABLE",
    "ByteRange",
    "MultipartByteranges",
    "Unsatisfiable",
    "multipart_byteranges",
    "new_boundary",
    "parse_ranges",
    "select_ranges",
    "unsatisfied_range",
]

# nginx's max_ranges is unlimited by default; the overlap rule already bounds the
# bytes, and this bounds the part heads (Apache's MaxRanges default is the same).
MAX_RANGES: Final = 200

# One range-spec with optional whitespace: "0-99", "500-", "-500".  ASCII digits only.
_RANGE_SPEC: Final = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")
# Positions beyond any file size: more digits are not converted (int() of a few
# thousand digits is slow, and of more than 4300 raises).
_MAX_DIGITS: Final = 20
_BEYOND: Final = 10**_MAX_DIGITS


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``first`` to ``last`` of a representation, both included (RFC 9110 §14.1.2)."""

    first: int
    last: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1

    def content_range(self, size: int) -> str:
        """The Content-Range value (§14.4) for this range of a ``size``-byte representation."""
        return f"bytes {self.first}-{self.last}/{size}"


class Unsatisfiable:
    """The answer for a Range none of whose ranges lie inside the file: 416."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSATISFIABLE"


UNSATISFIABLE: Final = Unsatisfiable()


def unsatisfied_range(size: int) -> str:
    """The Content-Range value a 416 carries (§15.5.17)."""
    return f"bytes */{size}"


def _position(digits: str) -> int:
    digits = digits.lstrip("0")
    if len(digits) > _MAX_DIGITS:
        return _BEYOND
    return int(digits) if digits else 0


def parse_ranges(
    field: str | bytes, size: int, max_ranges: int = MAX_RANGES
) -> tuple[ByteRange, ...] | Unsatisfiable | None:
    """The ranges of a ``Range`` value to send from a ``size``-byte file.

    None means "ignore the header and send the whole file"; see the module
    docstring for when (an empty file is one).
    """
    text = field.decode("latin-1") if isinstance(field, bytes) else field
    unit, equals, spec = text.partition("=")
    if not equals or unit.strip(" \t").lower() != "bytes" or size <= 0:
        return None
    ranges: list[ByteRange] = []
    total = 0
    seen_spec = False
    for element in spec.split(","):
        if not element.strip(" \t"):
            continue  # an empty list element (§5.6.1)
        match = _RANGE_SPEC.fullmatch(element)
        if match is None:
            return None
        first_text, last_text = match.groups()
        seen_spec = True
        if not first_text:
            if not last_text:
                return None  # "-" alone is not a range-spec
            suffix = _position(last_text)
            if suffix == 0:
                continue  # a zero suffix-length selects nothing (§14.1.3)
            selected = ByteRange(max(0, size - suffix), size - 1)
        else:
            first = _position(first_text)
            last = _position(last_text) if last_text else size - 1
            if last_text and last < first:
                return None  # §14.1.1: invalid, and with it the whole header
            if first >= size:
                continue  # unsatisfiable, but another range may be
            selected = ByteRange(first, min(last, size - 1))
        ranges.append(selected)
        total += selected.length
        if len(ranges) > max_ranges:
            return None
    if not seen_spec:
        return None  # "bytes=" holds no range-spec at all
    if not ranges:
        return UNSATISFIABLE
    if total > size:
        return None  # overlapping ranges ask for more than the file: nginx sends it whole
    return tuple(ranges)


def select_ranges(
    method: str,
    range_field: str | bytes | None,
    if_range: str | bytes | None,
    etag: str | bytes,
    last_modified: int,
    size: int,
    max_ranges: int = MAX_RANGES,
) -> tuple[ByteRange, ...] | Unsatisfiable | None:
    """Which ranges a request gets after the preconditions passed: None for the whole file."""
    if range_field is None or method != "GET" or size <= 0:
        return None
    if not if_range_holds(if_range, etag, last_modified):
        return None
    return parse_ranges(range_field, size, max_ranges)


def new_boundary() -> str:
    """A boundary shaped like nginx's (twenty digits), but random rather than a counter.

    A file's own bytes cannot be checked for the boundary before they are sent
    (RFC 2046 §5.1.1 asks that it not occur in them); 66 random bits make a
    collision with a file's content as good as impossible, where a counter
    starting at 1 is easily found in, say, a saved nginx response.
    """
    return f"{secrets.randbelow(10**20):020d}"


@dataclass(frozen=True, slots=True)
class MultipartByteranges:
    """A multipart/byteranges body: part heads and file ranges, in sending order."""

    boundary: str
    parts: tuple[tuple[bytes, ByteRange], ...]  # (part head, its range of the file)
    trailer: bytes  # the close delimiter
    content_length: int  # the whole body, known before any of it is sent

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    def segments(self) -> Iterator[bytes | ByteRange]:
        """The body in order: ``bytes`` to send as they are, ``ByteRange`` to send from the file."""
        for head, byte_range in self.parts:
            yield head
            yield byte_range
        yield self.trailer

    def render(self, content: bytes) -> bytes:
        """The whole body for a file held in memory (``content`` is all of it)."""
        pieces: list[bytes] = []
        for head, byte_range in self.parts:
            pieces.append(head)
            pieces.append(content[byte_range.first : byte_range.last + 1])
        pieces.append(self.trailer)
        return b"".join(pieces)


def multipart_byteranges(
    ranges: Sequence[ByteRange], size: int, content_type: str, boundary: str
) -> MultipartByteranges:
    """Lay out the body answering several ranges of a ``size``-byte file (RFC 9110 §14.6).

    ``content_type`` is what the whole file would be sent as (it is repeated in
    every part, charset included, as nginx does); empty leaves the part's
    Content-Type out.
    """
    type_line = f"Content-Type: {content_type}\r\n" if content_type else ""
    opening = f"\r\n--{boundary}\r\n{type_line}Content-Range: "
    parts = tuple(
        (f"{opening}{byte_range.content_range(size)}\r\n\r\n".encode("latin-1"), byte_range)
        for byte_range in ranges
    )
    trailer = f"\r\n--{boundary}--\r\n".encode("latin-1")
    length = len(trailer) + sum(len(head) + byte_range.length for head, byte_range in parts)
    return MultipartByteranges(boundary, parts, trailer, length)
