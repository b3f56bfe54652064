"""Sans-IO HTTP/1.x, shared by appserver and edge: request parsing over httptools,
response heads, and the rules for conditional and range requests.

No sockets, clocks or logging live here: bytes in, events or decisions out.
"""

from __future__ import annotations

from httpproto.conditional import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    entity_tag,
    entity_tag_bytes,
    entity_tags,
    etag_matches,
    evaluate_preconditions,
    if_range_holds,
)
from httpproto.dates import parse_http_date
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
from httpproto.ranges import (
    MAX_RANGES,
    UNSATISFIABLE,
    ByteRange,
    MultipartByteranges,
    Unsatisfiable,
    multipart_byteranges,
    new_boundary,
    parse_ranges,
    select_ranges,
    unsatisfied_range,
)
from httpproto.response import (
    CONTINUE,
    REASON_PHRASES,
    encode_head_bytes,
    encode_response_head,
    error_response,
    http_date,
    reason_phrase,
    simple_response,
    status_line,
)

__all__ = [
    "CLOSED",
    "CONTINUE",
    "MAX_RANGES",
    "NEED_DATA",
    "NOT_MODIFIED",
    "PRECONDITION_FAILED",
    "REASON_PHRASES",
    "UNSATISFIABLE",
    "BadRequest",
    "BodyTooLarge",
    "ByteRange",
    "Data",
    "EndOfMessage",
    "Event",
    "HeaderTooLarge",
    "HttpProtocolError",
    "MultipartByteranges",
    "RequestHead",
    "RequestParser",
    "Unsatisfiable",
    "UnsupportedTransferEncoding",
    "UriTooLong",
    "encode_head_bytes",
    "encode_response_head",
    "entity_tag",
    "entity_tag_bytes",
    "entity_tags",
    "error_response",
    "etag_matches",
    "evaluate_preconditions",
    "http_date",
    "if_range_holds",
    "multipart_byteranges",
    "new_boundary",
    "parse_http_date",
    "parse_ranges",
    "reason_phrase",
    "select_ranges",
    "simple_response",
    "status_line",
    "unsatisfied_range",
]
