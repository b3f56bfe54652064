"""The X-Request-ID rule edge (bytes) and appserver (text) share."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from httpproto.request_id import REQUEST_ID_MAX, RequestIdSource, sane_request_id


@pytest.mark.parametrize(
    ("value", "sane"),
    [
        ("e2e-1", True),
        ("!" * REQUEST_ID_MAX, True),
        ("!" * (REQUEST_ID_MAX + 1), False),
        ("", False),
        ("has space", False),
        ("tab\there", False),
        ("nul\x00", False),
        ("del\x7f", False),
        ("caf\u00e9", False),
        (None, False),
    ],
)
def test_sane_ids_are_1_to_128_visible_ascii(value: str | None, sane: bool) -> None:
    assert sane_request_id(value) is sane
    if value is not None:
        assert sane_request_id(value.encode("utf-8")) is sane


@given(st.binary(max_size=140))
def test_bytes_and_text_give_the_same_answer(raw: bytes) -> None:
    expected = 0 < len(raw) <= REQUEST_ID_MAX and all(0x21 <= b <= 0x7E for b in raw)
    assert sane_request_id(raw) is expected
    assert sane_request_id(raw.decode("latin-1")) is expected


def test_new_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    source = RequestIdSource()
    ids = [source.new() for _ in range(1000)]  # several batches
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_that_forgets_gets_other_ids_than_its_parent() -> None:
    source = RequestIdSource()
    source.new()  # the parent holds a batch
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        source.forget()
        os.write(write_end, source.new().encode())
        os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    parent_ids = {source.new() for _ in range(127)}
    assert child_id not in parent_ids
