"""Replay tests/corpus/http whole, byte by byte and at random splits.

The result must not depend on how the bytes were split.  That is the
property a sans-IO parser behind real sockets needs (gunicorn ``treq.py``,
h11 ``tr()``).
"""

from __future__ import annotations

import random
import re
import runpy
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from httpproto import (
    CLOSED,
    NEED_DATA,
    Data,
    EndOfMessage,
    HttpProtocolError,
    RequestHead,
    RequestParser,
)

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "http"
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|[rnt0\\])")
_SIMPLE_ESCAPES = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"0": b"\x00", b"\\": b"\\"}
_HEAD_FIELDS = set(RequestHead.__dataclass_fields__)
_SIDECAR_KEYS = {"requests", "options", "error", "match"}


def load_http(path: Path) -> bytes:
    """Decode the corpus escaping described in tests/corpus/http/README.md."""
    text = path.read_bytes().replace(b"\r", b"").replace(b"\n", b"")

    def unescape(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code[:1] == b"x":
            return bytes([int(code[1:], 16)])
        return _SIMPLE_ESCAPES[code]

    return _ESCAPE.sub(unescape, text)


def load_case(http_path: Path) -> tuple[bytes, dict[str, Any]]:
    sidecar = runpy.run_path(str(http_path.with_suffix(".py")))
    expected = {key: value for key, value in sidecar.items() if key in _SIDECAR_KEYS}
    return load_http(http_path), expected


def replay(
    data: bytes, cuts: list[int], options: dict[str, Any]
) -> tuple[list[dict[str, Any]], HttpProtocolError | None, bool]:
    """Feed ``data`` cut at ``cuts``, then EOF; the requests seen, the error if any, CLOSED seen."""
    parser = RequestParser(**options)
    requests: list[dict[str, Any]] = []
    closed = False

    def drain(after_eof: bool) -> None:
        nonlocal closed
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                assert not after_eof, "NEED_DATA after EOF: the parser must finish or raise"
                return
            if event is CLOSED:
                closed = True
                return
            if isinstance(event, RequestHead):
                record = {name: getattr(event, name) for name in _HEAD_FIELDS}
                record.update(body=b"", trailers=[], complete=False)
                requests.append(record)
            elif isinstance(event, Data):
                assert event.data, "empty Data event"
                requests[-1]["body"] += event.data
            else:
                assert isinstance(event, EndOfMessage)
                requests[-1]["trailers"] = list(event.trailers)
                requests[-1]["complete"] = True

    bounds = [0, *cuts, len(data)]
    try:
        for start, end in pairwise(bounds):
            if end > start:
                parser.feed(data[start:end])
                drain(after_eof=False)
        parser.feed(b"")
        drain(after_eof=True)
    except HttpProtocolError as exc:
        with pytest.raises(type(exc)):
            parser.next_event()  # errors are sticky: the connection is dead
        return requests, exc, closed
    return requests, None, closed


def _cut_sets(data: bytes, mode: str) -> list[list[int]]:
    if mode == "whole":
        return [[]]
    if mode == "bytewise":
        return [list(range(1, len(data)))]
    rng = random.Random(f"{mode}:{data!r}")
    return [
        sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 12))))
        for _ in range(25)
    ]


def _check_requests(seen: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(seen) == len(expected), [r["target"] for r in seen]
    for got, want in zip(seen, expected, strict=True):
        assert {key: got[key] for key in want} == want


CASES = sorted(CORPUS.glob("*/*.http"))
MODES = ["whole", "bytewise", "random"]


def test_corpus_is_paired_and_well_formed() -> None:
    assert len(list(CORPUS.glob("valid/*.http"))) >= 15
    assert len(list(CORPUS.glob("invalid/*.http"))) >= 30
    for path in CORPUS.glob("*/*"):
        if path.suffix in (".http", ".py"):
            partner = path.with_suffix(".py" if path.suffix == ".http" else ".http")
            assert partner.exists(), f"{path} has no {partner.name}"
    for http_path in CASES:
        _data, expected = load_case(http_path)
        assert "requests" in expected, http_path
        assert ("error" in expected) == (http_path.parent.name == "invalid"), http_path
        for request in expected["requests"]:
            assert set(request) <= _HEAD_FIELDS | {"body", "trailers"}, http_path


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("http_path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_corpus(http_path: Path, mode: str) -> None:
    data, expected = load_case(http_path)
    options = expected.get("options", {})
    for cuts in _cut_sets(data, mode):
        seen, error, closed = replay(data, cuts, options)
        if http_path.parent.name == "valid":
            assert error is None, f"{cuts}: {error!r}"
            assert closed
            assert all(request["complete"] for request in seen)
        else:
            assert error is not None and type(error) is expected["error"], f"{cuts}: {error!r}"
            assert error.status_hint == expected["error"].status_hint
            if "match" in expected:
                assert re.search(expected["match"], str(error), re.IGNORECASE), str(error)
        _check_requests(seen, expected["requests"])
