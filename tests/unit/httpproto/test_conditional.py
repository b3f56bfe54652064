"""httpproto.conditional: ETag, RFC 9110 §13.2.2 preconditions, If-Range."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpproto import (
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    entity_tag,
    entity_tag_bytes,
    entity_tags,
    etag_matches,
    evaluate_preconditions,
    if_range_holds,
)

MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
SIZE = 1024
ETAG = entity_tag(MTIME, SIZE)
AT = email.utils.formatdate(MTIME, usegmt=True)
BEFORE = email.utils.formatdate(MTIME - 60, usegmt=True)
AFTER = email.utils.formatdate(MTIME + 60, usegmt=True)
ASCTIME_AT = "Tue Nov 14 22:13:20 2023"
ASCTIME_BEFORE = "Tue Nov 14 22:12:20 2023"


def test_etag_is_nginx_seconds_hex_dash_size_hex() -> None:
    # ngx_http_set_etag: "%xT-%xO" of last_modified_time and content_length_n.
    assert ETAG == '"6553f100-400"'
    assert entity_tag(0, 0) == '"0-0"'


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=2**50))
def test_the_bytes_etag_is_the_same_tag(last_modified: int, size: int) -> None:
    assert entity_tag_bytes(last_modified, size) == entity_tag(last_modified, size).encode()


@pytest.mark.parametrize(
    ("field", "tags"),
    [
        ('"a"', ['"a"']),
        ('"a", W/"b"', ['"a"', 'W/"b"']),
        ('"a,b", "c"', ['"a,b"', '"c"']),  # a comma is a legal etagc
        (' , "a" ,, "b" , ', ['"a"', '"b"']),  # empty list elements are accepted
        ("", []),
        ('"a" "b"', None),  # no comma between two tags
        ('"a"x', None),
        ("abc", None),  # not quoted
        ('W/ "a"', None),
        ('"a b"', None),  # a space is not an etagc
        ('"a', None),
        ("*", None),  # "*" is the field's other form, not a tag
        ('"a", *', None),
    ],
)
def test_entity_tag_lists_are_read_by_their_grammar(field: str, tags: list[str] | None) -> None:
    assert entity_tags(field) == tags
    assert entity_tags(field.encode("latin-1")) == tags


@pytest.mark.parametrize(
    ("field", "weak", "strong"),
    [
        (ETAG, True, True),
        ("W/" + ETAG, True, False),  # weak comparison ignores W/, strong never matches it
        (f'"x", {ETAG}', True, True),
        (f'"a,b", W/{ETAG} , "c"', True, False),
        ("*", True, True),
        (" * ", True, True),
        (f'"a", *, {ETAG}', False, False),  # "*" inside a list: not a list of tags at all
        (ETAG + "x", False, False),  # nginx: "..."x matches nothing either
        ('"other"', False, False),
        ("", False, False),
    ],
)
def test_weak_and_strong_comparison(field: str, weak: bool, strong: bool) -> None:
    assert etag_matches(field, ETAG, weak=True) is weak
    assert etag_matches(field, ETAG, weak=False) is strong
    assert etag_matches(field.encode(), ETAG.encode(), weak=True) is weak


def test_a_weak_etag_of_ours_never_passes_the_strong_comparison() -> None:
    assert etag_matches("W/" + ETAG, "W/" + ETAG, weak=True)
    assert not etag_matches("W/" + ETAG, "W/" + ETAG, weak=False)
    assert etag_matches("*", "W/" + ETAG, weak=False)


# One table for both servers.  "edge said" / "appserver said" record what each
# answered before the rules were shared, where they disagreed.
CASES = [
    # method, headers, expected
    ("GET", {}, None),
    ("GET", {"if_none_match": ETAG}, NOT_MODIFIED),
    ("HEAD", {"if_none_match": ETAG}, NOT_MODIFIED),
    ("GET", {"if_none_match": f"W/{ETAG}"}, NOT_MODIFIED),
    ("GET", {"if_none_match": "*"}, NOT_MODIFIED),
    ("GET", {"if_none_match": '"other"'}, None),
    # If-None-Match parsed two ways: edge split on commas and took "*" anywhere
    # in the list; appserver scanned for quoted strings, so junk around one matched.
    ("GET", {"if_none_match": f'"a,b", {ETAG}'}, NOT_MODIFIED),
    ("GET", {"if_none_match": f"junk{ETAG}junk"}, None),  # appserver said 304
    ("GET", {"if_none_match": '"x", *'}, None),  # edge said 304
    # If-None-Match decides alone (§13.2.2 step 3).
    ("GET", {"if_none_match": '"other"', "if_modified_since": AFTER}, None),
    ("GET", {"if_none_match": ETAG, "if_modified_since": BEFORE}, NOT_MODIFIED),
    ("POST", {"if_none_match": ETAG}, PRECONDITION_FAILED),
    ("POST", {"if_modified_since": AT}, None),  # IMS is for GET and HEAD only
    # If-Modified-Since: not modified since a date at or after Last-Modified.
    ("GET", {"if_modified_since": AT}, NOT_MODIFIED),
    ("GET", {"if_modified_since": AFTER}, NOT_MODIFIED),  # nginx's "exact" default: 200
    ("GET", {"if_modified_since": BEFORE}, None),
    ("GET", {"if_modified_since": "not a date"}, None),
    # asctime dates are GMT: edge ignored them.
    ("GET", {"if_modified_since": ASCTIME_AT}, NOT_MODIFIED),  # edge said 200
    ("GET", {"if_modified_since": ASCTIME_BEFORE}, None),
    ("GET", {"if_modified_since": "Tuesday, 14-Nov-23 22:13:20 GMT"}, NOT_MODIFIED),
    # If-Match and If-Unmodified-Since: appserver had neither.
    ("GET", {"if_match": ETAG}, None),
    ("GET", {"if_match": f'"x", {ETAG}'}, None),
    ("GET", {"if_match": "*"}, None),
    ("GET", {"if_match": '"other"'}, PRECONDITION_FAILED),  # appserver said 200
    ("GET", {"if_match": f"W/{ETAG}"}, PRECONDITION_FAILED),  # strong comparison
    ("GET", {"if_match": "garbage"}, PRECONDITION_FAILED),
    ("GET", {"if_unmodified_since": AT}, None),
    ("GET", {"if_unmodified_since": AFTER}, None),
    ("GET", {"if_unmodified_since": BEFORE}, PRECONDITION_FAILED),  # appserver said 200
    ("GET", {"if_unmodified_since": ASCTIME_BEFORE}, PRECONDITION_FAILED),
    ("GET", {"if_unmodified_since": "garbage"}, None),  # §13.1.4: ignored
    # If-Match present: If-Unmodified-Since is not evaluated (§13.2.2 step 2).
    ("GET", {"if_match": ETAG, "if_unmodified_since": BEFORE}, None),
    # Step 1 before step 3: a failed If-Match is 412 even when INM would say 304.
    ("GET", {"if_match": '"other"', "if_none_match": ETAG}, PRECONDITION_FAILED),
    ("GET", {"if_match": ETAG, "if_none_match": ETAG}, NOT_MODIFIED),
]


@pytest.mark.parametrize(("method", "headers", "expected"), CASES)
def test_preconditions_follow_rfc9110_order(
    method: str, headers: dict[str, str], expected: int | None
) -> None:
    assert evaluate_preconditions(method, ETAG, MTIME, **headers) == expected
    as_bytes = {name: value.encode("latin-1") for name, value in headers.items()}
    assert evaluate_preconditions(method, ETAG.encode(), MTIME, **as_bytes) == expected


@pytest.mark.parametrize(
    ("if_range", "holds"),
    [
        (None, True),
        (ETAG, True),
        (f" {ETAG} ", True),
        ('"stale"', False),
        (f"W/{ETAG}", False),  # a weak tag never matches (§13.1.5)
        (AT, True),  # a date must equal Last-Modified exactly
        (ASCTIME_AT, True),
        (BEFORE, False),
        (AFTER, False),
        ("not a date", False),
    ],
)
def test_if_range(if_range: str | None, holds: bool) -> None:
    assert if_range_holds(if_range, ETAG, MTIME) is holds
    encoded = None if if_range is None else if_range.encode()
    assert if_range_holds(encoded, ETAG.encode(), MTIME) is holds


@given(
    st.sampled_from(["GET", "HEAD", "POST"]),
    st.dictionaries(
        st.sampled_from(["if_match", "if_unmodified_since", "if_none_match", "if_modified_since"]),
        st.one_of(
            st.sampled_from([ETAG, f"W/{ETAG}", "*", AT, BEFORE, AFTER, ASCTIME_AT]),
            st.text(max_size=30),
        ),
    ),
)
def test_any_headers_give_one_of_three_answers(method: str, headers: dict[str, str]) -> None:
    assert evaluate_preconditions(method, ETAG, MTIME, **headers) in (
        None,
        NOT_MODIFIED,
        PRECONDITION_FAILED,
    )
