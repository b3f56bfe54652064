"""httpproto.ranges: Range parsing (RFC 9110 §14) and multipart/byteranges bodies (§14.6)."""

from __future__ import annotations

import email.parser
import email.policy
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpproto import (
    MAX_RANGES,
    UNSATISFIABLE,
    ByteRange,
    entity_tag,
    multipart_byteranges,
    new_boundary,
    parse_ranges,
    select_ranges,
    unsatisfied_range,
)

SIZE = 1024
MTIME = 1_700_000_000
ETAG = entity_tag(MTIME, SIZE)
R = ByteRange


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("bytes=0-99", (R(0, 99),)),
        ("bytes=0-0", (R(0, 0),)),
        ("bytes=100-", (R(100, 1023),)),
        ("bytes=-500", (R(524, 1023),)),
        ("bytes=-5000", (R(0, 1023),)),
        ("bytes=1000-5000", (R(1000, 1023),)),
        ("bytes=1023-", (R(1023, 1023),)),
        ("BYTES=10-19", (R(10, 19),)),  # the unit is case-insensitive
        ("bytes = 10 - 19", (R(10, 19),)),  # whitespace is tolerated
        ("bytes=0000010-19", (R(10, 19),)),
        ("bytes=0-" + "9" * 5000, (R(0, 1023),)),  # a huge last-pos is clamped, not int()ed
        # Several ranges: kept in the order asked, never merged (nginx).
        ("bytes=0-1,4-5", (R(0, 1), R(4, 5))),
        ("bytes=0-1, 4-5", (R(0, 1), R(4, 5))),
        ("bytes=500-599,0-99", (R(500, 599), R(0, 99))),
        ("bytes=0-0,0-0", (R(0, 0), R(0, 0))),  # overlapping, but no more than the file
        ("bytes=0-600,500-900", (R(0, 600), R(500, 900))),  # 1002 bytes <= 1024
        ("bytes=0-1,", (R(0, 1),)),  # an empty list element (nginx: 416)
        ("bytes=,0-1", (R(0, 1),)),
        # Unsatisfiable ranges are dropped when another one is satisfiable.
        ("bytes=2000-3000,0-1", (R(0, 1),)),
        ("bytes=-0,0-1", (R(0, 1),)),
        ("bytes=0-1,2000-", (R(0, 1),)),
    ],
)
def test_parse_ranges(field: str, expected: tuple[ByteRange, ...]) -> None:
    assert parse_ranges(field, SIZE) == expected
    assert parse_ranges(field.encode(), SIZE) == expected


@pytest.mark.parametrize(
    "field",
    [
        "bytes=1024-",
        "bytes=5000-6000",
        "bytes=-0",
        "bytes=2000-3000,4000-",
        "bytes=" + "9" * 30 + "-",
    ],
)
def test_nothing_satisfiable_is_416(field: str) -> None:
    assert parse_ranges(field, SIZE) is UNSATISFIABLE


@pytest.mark.parametrize(
    "field",
    [
        "items=0-5",  # another unit: MUST be ignored
        "bytes=5-3",  # invalid range-spec (nginx: 416)
        "bytes=5-3,0-1",  # one invalid range-spec invalidates the header (nginx: 206 for 0-1)
        "bytes=-",
        "bytes=",
        "bytes=,",
        "bytes=abc",  # nginx: 416
        "bytes=٣-٤",  # non-ASCII digits
        "bytes=0-1-2",
        "bytes=0x10-20",
        "0-99",
        "bytes 0-99",
        # nginx's guards: overlaps adding up to more than the file, and too many ranges.
        "bytes=0-,0-",
        "bytes=0-600,400-1023",
        "bytes=" + ",".join(f"{n}-{n}" for n in range(MAX_RANGES + 1)),
    ],
)
def test_ignored_range_means_the_whole_file(field: str) -> None:
    assert parse_ranges(field, SIZE) is None


def test_max_ranges_is_a_parameter() -> None:
    field = "bytes=0-0,2-2,4-4"
    assert parse_ranges(field, SIZE, max_ranges=3) == (R(0, 0), R(2, 2), R(4, 4))
    assert parse_ranges(field, SIZE, max_ranges=2) is None
    many = "bytes=" + ",".join(f"{n}-{n}" for n in range(MAX_RANGES))
    assert len(parse_ranges(many, SIZE)) == MAX_RANGES  # type: ignore[arg-type]


def test_select_ranges_applies_method_if_range_and_empty_files() -> None:
    def select(method: str = "GET", field: str | None = "bytes=0-9", **kw: object) -> object:
        return select_ranges(
            method,
            field,
            kw.get("if_range"),  # type: ignore[arg-type]
            ETAG,
            MTIME,
            kw.get("size", SIZE),  # type: ignore[arg-type]
        )

    assert select() == (R(0, 9),)
    assert select(field=None) is None
    assert select("HEAD") is None  # §14.2: Range is defined for GET only (nginx: 206)
    assert select("POST") is None
    assert select(if_range=ETAG) == (R(0, 9),)
    assert select(if_range='"old"') is None
    # An empty file has nothing to address: every Range gets the whole (empty) 200.
    for field in ("bytes=0-", "bytes=0-0", "bytes=-5", "bytes=5-"):
        assert select(field=field, size=0) is None


def test_content_range_values() -> None:
    assert R(0, 99).content_range(SIZE) == "bytes 0-99/1024"
    assert R(0, 99).length == 100
    assert unsatisfied_range(SIZE) == "bytes */1024"


def test_multipart_layout_is_nginxs() -> None:
    body = multipart_byteranges(
        [R(0, 3), R(10, 12)], SIZE, "text/plain; charset=utf-8", "00000000000000000001"
    )
    content = bytes(range(256)) * 4
    rendered = body.render(content)
    assert rendered == (
        b"\r\n--00000000000000000001\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Range: bytes 0-3/1024\r\n"
        b"\r\n"
        b"\x00\x01\x02\x03"
        b"\r\n--00000000000000000001\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Range: bytes 10-12/1024\r\n"
        b"\r\n"
        b"\n\x0b\x0c"
        b"\r\n--00000000000000000001--\r\n"
    )
    # The same bytes and length nginx 1.22 sent for "Range: bytes=0-3,10-12" of
    # this file (Content-Length: 237 there, with the same type and boundary length).
    assert body.content_length == len(rendered) == 237
    assert body.content_type == "multipart/byteranges; boundary=00000000000000000001"


def test_a_part_without_a_type_has_no_content_type_line() -> None:
    body = multipart_byteranges([R(0, 0), R(1, 1)], 2, "", "b")
    assert body.render(b"xy") == (
        b"\r\n--b\r\nContent-Range: bytes 0-0/2\r\n\r\nx"
        b"\r\n--b\r\nContent-Range: bytes 1-1/2\r\n\r\ny"
        b"\r\n--b--\r\n"
    )


def test_segments_are_the_body_in_order() -> None:
    body = multipart_byteranges([R(0, 1), R(5, 9)], 10, "a/b", "x")
    segments = list(body.segments())
    assert segments[1::2][:2] == [R(0, 1), R(5, 9)]
    assert all(isinstance(segment, bytes) for segment in segments[0::2])
    content = b"0123456789"
    built = b"".join(s if isinstance(s, bytes) else content[s.first : s.last + 1] for s in segments)
    assert built == body.render(content)


def test_new_boundaries_are_twenty_digits_and_differ() -> None:
    boundaries = {new_boundary() for _ in range(50)}
    assert len(boundaries) == 50
    assert all(re.fullmatch(r"[0-9]{20}", boundary) for boundary in boundaries)


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    """The parts as Python's email parser reads them: (media type, range, payload)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    assert message.is_multipart()
    return [
        (part.get_content_type(), part["Content-Range"], part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


# --- properties -----------------------------------------------------------------------


@st.composite
def range_fields(draw: st.DrawFn) -> tuple[str, int]:
    size = draw(st.integers(min_value=1, max_value=5000))
    position = st.integers(min_value=0, max_value=size + 100)
    spec = st.one_of(
        st.tuples(position, position).map(lambda pair: f"{min(pair)}-{max(pair)}"),
        position.map(lambda first: f"{first}-"),
        position.map(lambda suffix: f"-{suffix}"),
    )
    specs = draw(st.lists(spec, min_size=1, max_size=8))
    return "bytes=" + ",".join(specs), size


@given(range_fields())
def test_selected_ranges_lie_inside_the_file(case: tuple[str, int]) -> None:
    field, size = case
    result = parse_ranges(field, size)
    if isinstance(result, tuple):
        assert result
        assert len(result) <= MAX_RANGES
        assert sum(r.length for r in result) <= size
        for byte_range in result:
            assert 0 <= byte_range.first <= byte_range.last < size


@given(st.text(max_size=60) | st.binary(max_size=60), st.integers(min_value=0, max_value=10**6))
def test_any_field_parses_to_ranges_416_or_none(field: str | bytes, size: int) -> None:
    result = parse_ranges(field, size)
    assert result is None or result is UNSATISFIABLE or isinstance(result, tuple)
    if isinstance(result, tuple):
        assert all(0 <= r.first <= r.last < size for r in result)


@given(range_fields(), st.sampled_from(["text/plain; charset=utf-8", "image/png", ""]))
def test_multipart_length_is_the_bytes_produced_and_parts_are_the_slices(
    case: tuple[str, int], content_type: str
) -> None:
    field, size = case
    ranges = parse_ranges(field, size)
    if not isinstance(ranges, tuple) or len(ranges) < 2:
        return
    content = bytes(index % 251 for index in range(size))
    body = multipart_byteranges(ranges, size, content_type, new_boundary())
    rendered = body.render(content)
    assert body.content_length == len(rendered)
    parts = parse_multipart(body.content_type, rendered)
    assert len(parts) == len(ranges)
    for (part_type, part_range, payload), byte_range in zip(parts, ranges, strict=True):
        assert part_range == byte_range.content_range(size)
        assert payload == content[byte_range.first : byte_range.last + 1]
        if content_type:
            assert part_type == content_type.split(";")[0]
