"""Sans-IO codec for the uwsgi binary protocol, shared by appserver and edge.

No sockets, clocks or logging live here: bytes in, events out.
"""

from __future__ import annotations

from uwsgiproto.errors import (
    BlockTooLarge,
    EmptyVars,
    InvalidVarKey,
    MalformedVars,
    TruncatedPacket,
    UnsupportedModifier,
    UwsgiProtocolError,
    VarsTooLarge,
)
from uwsgiproto.packet import (
    CLOSED,
    HEADER_SIZE,
    MAX_DATASIZE,
    NEED_DATA,
    Header,
    PacketDecoder,
    Request,
    decode_header,
    decode_vars,
    encode_header,
    encode_packet,
    encode_vars,
    parse_packet,
)

__all__ = [
    "CLOSED",
    "HEADER_SIZE",
    "MAX_DATASIZE",
    "NEED_DATA",
    "BlockTooLarge",
    "EmptyVars",
    "Header",
    "InvalidVarKey",
    "MalformedVars",
    "PacketDecoder",
    "Request",
    "TruncatedPacket",
    "UnsupportedModifier",
    "UwsgiProtocolError",
    "VarsTooLarge",
    "decode_header",
    "decode_vars",
    "encode_header",
    "encode_packet",
    "encode_vars",
    "parse_packet",
]
