"""Property tests: arbitrary input never escapes as anything but HttpProtocolError,
and generated valid requests parse back the same whatever the splits."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from httpproto import (
    CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    HttpProtocolError,
    RequestHead,
    RequestParser,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Prefixes that put the parser in each state before the random bytes arrive.
PREFIXES = [
    b"",
    b"GET / HTTP/1.1\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
]
LIMITS = st.fixed_dictionaries(
    {},
    optional={
        "max_header_size": st.integers(16, 512),
        "max_line": st.integers(8, 256),
        "max_headers": st.integers(0, 8),
        "max_body_size": st.integers(0, 64),
    },
)
# Bytes that steer a protocol parser: delimiters, controls, hex digits, high bytes.
INTERESTING = st.binary(max_size=200) | st.lists(
    st.sampled_from(
        [
            b"\r",
            b"\n",
            b"\r\n",
            b" ",
            b"\t",
            b":",
            b";",
            b"0",
            b"a",
            b"F",
            b"\x00",
            b"\xff",
            b"\r\n\r\n",
            b"GET / HTTP/1.1",
            b"Content-Length: 5",
            b"Transfer-Encoding: chunked",
        ]
    ),
    max_size=60,
).map(b"".join)


def _run(data: bytes, cuts: list[int], options: dict[str, int]) -> list[Any]:
    parser = RequestParser(**options)
    seen: list[Any] = []
    bounds = [0, *sorted(set(cuts)), len(data)]
    try:
        for start, end in pairwise(bounds):
            if end > start:
                parser.feed(data[start:end])
            while (event := parser.next_event()) is not NEED_DATA and event is not CLOSED:
                seen.append(event)
        parser.feed(b"")
        while (event := parser.next_event()) is not CLOSED:
            assert event is not NEED_DATA
            seen.append(event)
    except HttpProtocolError as exc:
        assert isinstance(exc.status_hint, int) and 400 <= exc.status_hint < 600
    return seen


@SETTINGS
@given(
    prefix=st.sampled_from(PREFIXES),
    data=INTERESTING,
    cuts=st.lists(st.integers(0, 500), max_size=20),
    options=LIMITS,
)
def test_arbitrary_bytes_raise_only_protocol_errors(
    prefix: bytes, data: bytes, cuts: list[int], options: dict[str, int]
) -> None:
    stream = prefix + data
    _run(stream, [c for c in cuts if c < len(stream)], options)


TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
    min_size=1,
    max_size=12,
)
FIELD_VALUE = st.binary(max_size=30).map(
    lambda b: bytes(c for c in b if c == 9 or 32 <= c != 127).strip(b" \t")
)
PATH = st.lists(
    st.text(
        st.characters(
            blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
            blacklist_characters='?#%/\\"<>^`{|}',
        ),
        max_size=8,
    ),
    max_size=4,
).map(lambda parts: ("/" + "/".join(parts)).encode())


# Fields that change framing or connection handling are added on purpose, not at random.
_SPECIAL_FIELDS = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"}


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
    path = draw(PATH)
    query = draw(st.sampled_from([b"", b"a=1", b"x=%20y&z"]))
    target = path + (b"?" + query if query else b"")
    version = draw(st.sampled_from(["1.0", "1.1"]))
    names = draw(st.lists(TOKEN, max_size=6))
    headers = []
    for name in names:
        if name.lower() not in _SPECIAL_FIELDS:
            headers.append((name.encode(), draw(FIELD_VALUE)))
    if version == "1.1" or draw(st.booleans()):  # Host is mandatory in 1.1 only
        headers.insert(draw(st.integers(0, len(headers))), (b"Host", b"example.com"))
    body = draw(st.binary(max_size=80))
    framing = draw(
        st.sampled_from(["none", "length", "chunked"] if version == "1.1" else ["none", "length"])
    )
    if framing == "none":
        body = b""
    wire_body = body
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        sizes = draw(st.lists(st.integers(1, 20), max_size=8))
        pieces, rest = [], body
        for size in sizes:
            if rest:
                pieces.append(b"%x\r\n%s\r\n" % (len(rest[:size]), rest[:size]))
                rest = rest[size:]
        if rest:
            pieces.append(b"%X\r\n%s\r\n" % (len(rest), rest))
        wire_body = b"".join(pieces) + b"0\r\n\r\n"
    head = b"%s %s HTTP/%s\r\n" % (method.encode(), target, version.encode())
    head += b"".join(b"%s: %s\r\n" % pair for pair in headers) + b"\r\n"
    expected = {
        "method": method,
        "target": target,
        "path": path,
        "query": query,
        "http_version": version,
        "headers": [(name.lower(), value) for name, value in headers],
        "keep_alive": version == "1.1",
        "chunked": framing == "chunked",
        "content_length": len(body) if framing == "length" else None,
        "body": body,
    }
    return head + wire_body, expected


@SETTINGS
@given(
    batch=st.lists(requests(), min_size=1, max_size=4),
    cuts=st.lists(st.integers(0, 2000), max_size=30),
)
def test_generated_requests_parse_back_at_any_split(
    batch: list[tuple[bytes, dict[str, Any]]], cuts: list[int]
) -> None:
    # A 1.0 request without keep-alive ends the connection: nothing after it is parsed.
    for index, (_wire, expected) in enumerate(batch):
        if not expected["keep_alive"]:
            batch = batch[: index + 1]
            break
    stream = b"".join(wire for wire, _ in batch)
    events = _run(stream, [c for c in cuts if c < len(stream)], {})
    parsed: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, RequestHead):
            record = {name: getattr(event, name) for name in batch[0][1] if name != "body"}
            record["body"] = b""
            parsed.append(record)
        elif isinstance(event, Data):
            parsed[-1]["body"] += event.data
        else:
            assert isinstance(event, EndOfMessage)
    assert parsed == [expected for _, expected in batch]


@SETTINGS
@given(
    original=requests(),
    position=st.integers(0, 10_000),
    replacement=st.binary(min_size=0, max_size=3),
    cuts=st.lists(st.integers(0, 500), max_size=10),
)
def test_mutated_requests_raise_only_protocol_errors(
    original: tuple[bytes, dict[str, Any]], position: int, replacement: bytes, cuts: list[int]
) -> None:
    wire = original[0]
    position %= len(wire)
    mutated = wire[:position] + replacement + wire[position + 1 :]
    _run(mutated, [c for c in cuts if c < len(mutated)], {})
