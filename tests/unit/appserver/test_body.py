from __future__ import annotations

import pytest

from appserver.body import ClientDisconnected, InputStream, buffer_body


def source(*chunks: bytes):
    pending = list(chunks)

    def read(size: int) -> bytes:
        if not pending:
            return b""
        chunk = pending.pop(0)
        if len(chunk) > size:
            pending.insert(0, chunk[size:])
            chunk = chunk[:size]
        return chunk

    return read


def test_read_is_bounded_by_content_length() -> None:
    stream = InputStream(source(b"llo wor", b"ld|NEXT REQUEST"), 11, preread=b"he")
    assert stream.read() == b"hello world"
    assert stream.read() == b"" and stream.read(10) == b""


def test_read_sizes_and_readline() -> None:
    stream = InputStream(source(b"line 1\nline", b" 2\nrest"), 18)
    assert stream.read(3) == b"lin"
    assert stream.readline() == b"e 1\n"
    assert stream.readline(3) == b"lin"
    assert list(stream) == [b"e 2\n", b"rest"]


def test_a_short_body_raises_client_disconnected() -> None:
    stream = InputStream(source(b"abc"), 10)
    with pytest.raises(ClientDisconnected, match="after 3 of 10 body bytes"):
        stream.read()
    assert issubclass(ClientDisconnected, OSError)


def test_unknown_length_reads_to_the_sources_end() -> None:
    stream = InputStream(source(b"chunk1", b"chunk2"), None)
    assert stream.read() == b"chunk1chunk2"


def test_drain() -> None:
    stream = InputStream(source(b"x" * 100), 100)
    assert stream.drain(1000) is True
    assert stream.exhausted
    assert InputStream(source(b"x" * 100), 100).drain(10) is False


def test_post_buffering_spills_to_disk() -> None:
    with buffer_body(InputStream(source(b"a" * 100), 100), 1000) as small:
        assert small.read() == b"a" * 100
    with buffer_body(InputStream(source(b"b" * 5000), 5000), 1000) as big:
        assert big._rolled  # type: ignore[attr-defined]  (SpooledTemporaryFile moved to disk)
        assert big.read() == b"b" * 5000
