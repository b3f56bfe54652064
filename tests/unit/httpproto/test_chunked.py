"""ChunkedDecoder on its own: both modes, any split, each error through the caller's factory."""

from __future__ import annotations

import random

import pytest

from httpproto.chunked import ChunkedDecoder


class _Fault(Exception):
    pass


class _Errors:
    """Names each fault, so a test can tell which check fired."""

    def missing_crlf(self) -> Exception:
        return _Fault("missing_crlf")

    def unterminated_size_line(self) -> Exception:
        return _Fault("unterminated_size_line")

    def size_line_too_long(self) -> Exception:
        return _Fault("size_line_too_long")

    def invalid_size_line(self, line: bytes) -> Exception:
        return _Fault(f"invalid_size_line {line!r}")

    def extensions_too_large(self) -> Exception:
        return _Fault("extensions_too_large")

    def body_too_large(self, limit: int) -> Exception:
        return _Fault(f"body_too_large {limit}")

    def trailers_too_large(self, limit: int) -> Exception:
        return _Fault(f"trailers_too_large {limit}")

    def bare_lf_in_trailers(self) -> Exception:
        return _Fault("bare_lf_in_trailers")


def _decoder(strict: bool = True, **limits: int) -> ChunkedDecoder:
    return ChunkedDecoder(
        _Errors(), strict=strict, max_trailers=limits.pop("max_trailers", 256), **limits
    )


def _run(
    decoder: ChunkedDecoder, pieces: list[bytes], max_body: int | None = None
) -> tuple[bytes, bytes]:
    """Feed ``pieces`` as a parser would; the body and the bytes left after it."""
    body = b""
    buf = b""
    for piece in pieces:
        buf += piece
        data, pos, done = decoder.decode(buf, max_body)
        body += data
        buf = buf[pos:]
        if done:
            return body, buf
    raise AssertionError(f"body not complete; {buf!r} left")


BODY = b'5\r\nhello\r\n1;a=b;c="d"\r\n \r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nNEXT'


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("seed", range(20))
def test_any_split_gives_the_same_body_and_trailers(strict: bool, seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(BODY)), rng.randint(0, 12)))
    pieces = [BODY[a:b] for a, b in zip([0, *cuts], [*cuts, len(BODY)], strict=True)]
    decoder = _decoder(strict)
    body, rest = _run(decoder, pieces)
    assert body == b"hello 0123456789abcdef"
    assert decoder.trailers == b"X-T: 1\r\n\r\n"
    assert b"NEXT".startswith(rest)  # whatever followed the body stays with the caller


def test_no_trailers_and_empty_buffer() -> None:
    decoder = _decoder()
    assert decoder.decode(b"") == (b"", 0, False)
    assert decoder.decode(b"3\r\nabc\r\n0\r\n\r\nGET") == (b"abc", 13, True)
    assert decoder.trailers == b""


def test_waits_for_a_partial_size_line_and_crlf() -> None:
    decoder = _decoder()
    assert decoder.decode(b"3\r") == (b"", 0, False)
    assert decoder.decode(b"3\r\nabc\r") == (b"abc", 6, False)
    assert decoder.decode(b"\r") == (b"", 0, False)


@pytest.mark.parametrize(
    ("strict", "data", "fault"),
    [
        (True, b"3\r\nabcX", "missing_crlf"),
        (False, b"3\r\nabc\rX", "missing_crlf"),
        (True, b"3\nabc", "unterminated_size_line"),
        (True, b"f" * 4097, "unterminated_size_line"),
        (False, b"f" * 4097, "unterminated_size_line"),
        (True, b"1;" + b"a" * 4096 + b"\r\n", "size_line_too_long"),
        (True, b"3 \r\n", "invalid_size_line b'3 '"),
        (True, b"zz\r\n", "invalid_size_line b'zz'"),
        (False, b"zz\r\n", "invalid_size_line b'zz'"),
        (True, b"0\r\nA: b\nC: d", "bare_lf_in_trailers"),
        (True, b"0\r\n" + b"A: b\r\n" * 50 + b"\r\n", "trailers_too_large 256"),
        (False, b"0\r\n" + b"A: b\r\n" * 50, "trailers_too_large 256"),
    ],
)
def test_faults_come_from_the_callers_factory(strict: bool, data: bytes, fault: str) -> None:
    with pytest.raises(_Fault) as info:
        _decoder(strict).decode(data)
    assert str(info.value) == fault


def test_lenient_mode_takes_what_strict_refuses() -> None:
    body = b"3 ;ext\r\nabc\r\n0\r\n" + b"A: b\r\n" * 50 + b"\r\n"
    decoder = _decoder(strict=False)
    data, pos, done = decoder.decode(body)
    assert (data, pos, done) == (b"abc", len(body), True)
    long_line = b"1;" + b"a" * 5000 + b"\r\nx\r\n0\r\n\r\n"
    assert _decoder(strict=False).decode(long_line) == (b"x", len(long_line), True)


def test_body_limit_is_checked_when_a_chunk_is_announced() -> None:
    decoder = _decoder()
    assert decoder.decode(b"5\r\nhello\r\n", 10) == (b"hello", 10, False)
    with pytest.raises(_Fault, match="body_too_large 10"):
        decoder.decode(b"6\r\n", 10)
    # The limit is per call: a server may only learn it after routing the head.
    assert _decoder().decode(b"6\r\nhello!\r\n0\r\n\r\n", None)[2]


def test_extension_bytes_are_capped_per_message() -> None:
    decoder = _decoder(max_extensions=8)
    assert decoder.decode(b"1;abc\r\nx\r\n")[0] == b"x"
    with pytest.raises(_Fault, match="extensions_too_large"):
        decoder.decode(b"1;abcdef\r\n")
