"""The uwsgi packet: a 4-byte header, a block of vars, then the request body.

Theory of operation
-------------------
Header: ``modifier1`` (u8), ``datasize`` (u16 little-endian), ``modifier2``
(u8).  For modifier1 0 (WSGI) the ``datasize`` bytes that follow are pairs of
``u16le key length, key, u16le value length, value``; the body follows and is
``CONTENT_LENGTH`` bytes long.  The server answers with a raw HTTP response
and closes (there is no framing on the way back).

``PacketDecoder`` is shaped like h11: ``feed(data)`` any number of times, then
``next_event()`` returns ``NEED_DATA``, ``CLOSED`` (the peer hung up before
sending a byte) or a ``Request``.  After a ``Request`` the bytes already read
past the vars (the start of the body) are in ``trailing_data``.  A packet with
an empty vars block is refused (``EmptyVars``): it names no method and no path.

Keys are printable ASCII (CGI variable names); values are decoded as latin-1
so that every byte survives, which is what PEP 3333 asks of "native strings".
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from uwsgiproto.errors import (
    BlockTooLarge,
    EmptyVars,
    InvalidVarKey,
    MalformedVars,
    TruncatedPacket,
    UnsupportedModifier,
    VarsTooLarge,
)

HEADER_SIZE: Final = 4
MAX_DATASIZE: Final = 0xFFFF
MODIFIER_WSGI: Final = 0

_HEADER = struct.Struct("<BHB")


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA: Final = _Sentinel("NEED_DATA")
CLOSED: Final = _Sentinel("CLOSED")


@dataclass(frozen=True, slots=True)
class Header:
    modifier1: int
    datasize: int
    modifier2: int


# Not frozen: a frozen dataclass __init__ pays an object.__setattr__ per field, once per request.
@dataclass(slots=True)
class Request:
    """A decoded uwsgi request: its modifiers and its vars (the WSGI environ's CGI part)."""

    modifier1: int
    modifier2: int
    vars: dict[str, str]


Event = Request | _Sentinel
VarValue = str | bytes


def encode_header(modifier1: int, datasize: int, modifier2: int = 0) -> bytes:
    if not 0 <= datasize <= MAX_DATASIZE:
        raise VarsTooLarge(f"uwsgi vars block of {datasize} bytes exceeds {MAX_DATASIZE}")
    if not (0 <= modifier1 <= 255 and 0 <= modifier2 <= 255):
        raise ValueError("uwsgi modifiers are single bytes (0-255)")
    return _HEADER.pack(modifier1, datasize, modifier2)


def decode_header(data: bytes) -> Header:
    if len(data) < HEADER_SIZE:
        raise TruncatedPacket(f"uwsgi header needs {HEADER_SIZE} bytes, got {len(data)}")
    modifier1, datasize, modifier2 = _HEADER.unpack_from(data)
    return Header(modifier1, datasize, modifier2)


def _as_bytes(value: VarValue) -> bytes:
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise MalformedVars(f"uwsgi var value is not latin-1 encodable: {value[:64]!r}") from exc


def encode_vars(pairs: Mapping[str, VarValue] | Iterable[tuple[str, VarValue]]) -> bytes:
    """Encode vars as the uwsgi block (without the header)."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    parts: list[bytes] = []
    append = parts.append
    for key, value in items:
        try:
            raw_key = key.encode("ascii") if isinstance(key, str) else key
        except UnicodeEncodeError:
            raise InvalidVarKey(f"uwsgi key is not ASCII: {key[:64]!r}") from None
        raw_value = _as_bytes(value)
        if not raw_key:
            raise MalformedVars("uwsgi var keys cannot be empty")
        if len(raw_key) > MAX_DATASIZE or len(raw_value) > MAX_DATASIZE:
            raise VarsTooLarge(f"uwsgi var {key!r} is longer than {MAX_DATASIZE} bytes")
        append(len(raw_key).to_bytes(2, "little"))
        append(raw_key)
        append(len(raw_value).to_bytes(2, "little"))
        append(raw_value)
    return b"".join(parts)


def encode_packet(
    pairs: Mapping[str, VarValue] | Iterable[tuple[str, VarValue]],
    modifier1: int = MODIFIER_WSGI,
    modifier2: int = 0,
) -> bytes:
    """Header plus vars, in one ``bytes`` ready to send before the body."""
    block = encode_vars(pairs)
    return encode_header(modifier1, len(block), modifier2) + block


# Keys already checked: the same twenty or so arrive with every request.  Bounded,
# since the peer chooses them.
_KEYS: dict[str, str] = {}
_KEYS_KEPT = 1024


def _check_key(key: str) -> None:
    # ``key`` is the raw key read as latin-1: one character per byte.
    if not key:
        raise MalformedVars("uwsgi key cannot be empty")
    if not key.isascii():
        raise InvalidVarKey(f"uwsgi key is not ASCII: {key[:64].encode('latin-1')!r}")
    if not key.isprintable():
        raise InvalidVarKey(f"uwsgi key holds control characters: {key[:64].encode('latin-1')!r}")
    if len(_KEYS) >= _KEYS_KEPT:
        _KEYS.clear()
    _KEYS[key] = key


def decode_vars(block: bytes) -> dict[str, str]:
    """Decode a complete vars block; raise a ``UwsgiProtocolError`` if it is malformed.

    The block is decoded to text once (latin-1 maps each byte to one character),
    so keys and values are slices of that text; the lengths are read from the
    bytes.  This loop runs for every var of every request, so it is kept to the
    fewest operations: a length that runs past the block shows up as an
    IndexError or as an end past the block, checked once; an empty key is
    never a known one, so ``_check_key`` refuses it.
    """
    text = block.decode("latin-1")
    result: dict[str, str] = {}
    end = len(block)
    pos = 0
    known = _KEYS
    value_start = 0
    try:
        while pos < end:
            key_end = pos + 2 + (block[pos] | (block[pos + 1] << 8))
            key = text[pos + 2 : key_end]
            value_start = key_end + 2
            pos = value_start + (block[key_end] | (block[key_end + 1] << 8))
            if key not in known:
                _check_key(key)
            result[key] = text[value_start:pos]
    except IndexError:
        raise MalformedVars(f"uwsgi var at offset {pos} runs past the vars block") from None
    if pos > end:
        raise MalformedVars(f"uwsgi value of {pos - value_start} bytes runs past the vars block")
    return result


_WSGI_ONLY: Final = frozenset({MODIFIER_WSGI})


def parse_packet(
    data: bytes, max_vars_size: int, modifiers: frozenset[int] = _WSGI_ONLY
) -> tuple[Request, int] | None:
    """The packet at the start of ``data`` and where its vars end, or None if incomplete.

    The one-call form of ``PacketDecoder`` for a buffer that usually holds a whole
    packet (a server's first read): no decoder object, one pass.  Raises what
    the decoder raises; a block over ``max_vars_size`` is refused from its header.
    """
    if len(data) < HEADER_SIZE:
        return None
    modifier1, datasize, modifier2 = _HEADER.unpack_from(data)
    if datasize > max_vars_size:
        raise BlockTooLarge(datasize, max_vars_size)
    if modifier1 not in modifiers:
        raise UnsupportedModifier(f"unsupported uwsgi modifier1 {modifier1}")
    if not datasize:
        raise EmptyVars("uwsgi packet with an empty vars block")
    end = HEADER_SIZE + datasize
    if len(data) < end:
        return None
    return Request(modifier1, modifier2, decode_vars(data[HEADER_SIZE:end])), end


class PacketDecoder:
    """Incremental decoder for one uwsgi request (header + vars).

    ``max_vars_size`` is uWSGI's ``buffer-size``: a ``datasize`` above it is
    refused before any of the block is buffered.
    """

    __slots__ = (
        "_buffer",
        "_eof",
        "_done",
        "max_vars_size",
        "modifiers",
        "trailing_data",
        "vars_size",
    )

    def __init__(
        self,
        max_vars_size: int = 4096,
        modifiers: frozenset[int] = frozenset({MODIFIER_WSGI}),
    ) -> None:
        self.max_vars_size = max_vars_size
        self.modifiers = modifiers
        self._buffer = b""
        self._eof = False
        self._done = False
        self.trailing_data = b""
        self.vars_size = 0  # datasize of the decoded request (uWSGI logs it)

    def feed(self, data: bytes) -> None:
        """Add bytes read from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
        elif self._done:
            self.trailing_data += data
        else:
            self._buffer += data

    def next_event(self) -> Event:
        if self._done:
            raise RuntimeError("PacketDecoder decodes one request; make a new one")
        buffer = self._buffer
        have = len(buffer)
        if have < HEADER_SIZE:
            if self._eof:
                if have == 0:
                    return CLOSED
                raise TruncatedPacket(f"peer closed after {have} of {HEADER_SIZE} header bytes")
            return NEED_DATA
        parsed = parse_packet(buffer, self.max_vars_size, self.modifiers)
        if parsed is None:
            if self._eof:
                datasize = _HEADER.unpack_from(buffer)[1]
                raise TruncatedPacket(
                    f"peer closed after {have - HEADER_SIZE} of {datasize} vars bytes"
                )
            return NEED_DATA
        request, end = parsed
        self.vars_size = end - HEADER_SIZE
        self.trailing_data = buffer[end:]
        self._buffer = b""
        self._done = True
        return request
