"""The names of the WSGISTACK_KEEPALIVE extension (docs/uwsgi-keepalive.md)."""

from __future__ import annotations

import pytest

from uwsgiproto.keepalive import ANSWER_HEADER, OFFER_VAR, OFFER_VERSION, answer_line, parse_answer


def test_the_spelling_is_the_documented_one() -> None:
    assert (OFFER_VAR, OFFER_VERSION, ANSWER_HEADER) == (
        "WSGISTACK_KEEPALIVE",
        "1",
        "Wsgistack-Keepalive",
    )
    assert answer_line(5) == "Wsgistack-Keepalive: timeout=5\r\n"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("timeout=5", 5),
        (b"timeout=30", 30),
        (" Timeout = 2 ", 2),
        ("timeout=", None),
        ("timeout=-1", None),
        ("timeout=٣", None),  # a non-ASCII digit
        ("max=5", None),
        ("", None),
    ],
)
def test_parse_answer(value: str | bytes, expected: int | None) -> None:
    assert parse_answer(value) == expected
