"""Sans-IO HTTP/1.x request parsing over httptools, shared by appserver and edge.

No sockets, clocks or logging live here: bytes in, events out.
"""

from __future__ import annotations

from httpproto.errors import (
    BadRequest,
    BodyTooLarge,
    HeaderTooLarge,
    HttpProtocolError,
    UnsupportedTransferEncoding,
    UriTooLong,
)
from httpproto.parser import (
    CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    Event,
    RequestHead,
    RequestParser,
)
from httpproto.response import (
    CONTINUE,
    REASON_PHRASES,
    encode_head_bytes,
    encode_response_head,
    http_date,
    error_response,
    reason_phrase,
    simple_response,
    status_line,
)

__all__ = [
    "CLOSED",
    "CONTINUE",
    "NEED_DATA",
    "REASON_PHRASES",
    "BadRequest",
    "BodyTooLarge",
    "Data",
    "EndOfMessage",
    "Event",
    "HeaderTooLarge",
    "HttpProtocolError",
    "RequestHead",
    "RequestParser",
    "UnsupportedTransferEncoding",
    "UriTooLong",
    "encode_head_bytes",
    "encode_response_head",
    "http_date",
    "error_response",
    "reason_phrase",
    "simple_response",
    "status_line",
]
