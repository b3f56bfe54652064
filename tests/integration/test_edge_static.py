"""edge serving files as a real process: what a browser sees, byte for byte."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import hashlib
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.edge import (
    EdgeProcess,
    exchange_raw,
    read_response,
    request,
    start_edge,
    write_config,
)
from tests.support.processes import REPO

SPA = REPO / "sampleapp" / "spa" / "dist"
SECRET = b"TOP-SECRET-CONTENT"


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EdgeProcess, Path, dict[str, tuple[str, int]]]]:
    directory = tmp_path_factory.mktemp("static")
    www = directory / "www"
    (www / "sub").mkdir(parents=True)
    (www / "empty").mkdir()
    (www / "index.html").write_text("<h1>home</h1>\n")
    (www / "sub" / "index.html").write_text("<h1>sub</h1>\n")
    (www / "style.css").write_text("body { color: red }\n")
    (www / "style.css.gz").write_bytes(b"\x1f\x8b-pretend-gzip")
    (www / "big.bin").write_bytes(os.urandom(300_000))
    (www / "cached.txt").write_text("version one\n")
    (directory / "secret.txt").write_bytes(SECRET)
    (www / "link-out").symlink_to(directory / "secret.txt")
    (www / "link-in").symlink_to(www / "style.css")
    config = write_config(
        directory,
        f"""
error_log: {{level: error}}
servers:
  - listen: 127.0.0.1:0
    locations:
      - path: /
        root: {www}
        gzip_static: true
      - path: /hour/
        alias: {www}/
        expires: 1h
      - path: /max/
        alias: {www}/
        expires: max
      - path: /epoch/
        alias: {www}/
        expires: epoch
      - path: /files
        alias: {www}/
      - path: /cached/
        alias: {www}/
        open_file_cache: {{max: 10, valid: 500ms}}
  - listen: 127.0.0.4:0
    locations:
      - path: /
        root: {SPA}
        try_files: [$uri, $uri/, /index.html]
""",
    )
    edge = start_edge(["-c", str(config)], cwd=directory, log_path=directory / "edge.log")
    try:
        files, spa = edge.ready(2)
        yield edge, www, {"files": files, "spa": spa}
    finally:
        edge.stop()


@pytest.fixture
def files(site: tuple[EdgeProcess, Path, dict[str, tuple[str, int]]]) -> tuple[str, int]:
    return site[2]["files"]


@pytest.fixture
def www(site: tuple[EdgeProcess, Path, dict[str, tuple[str, int]]]) -> Path:
    return site[1]


def test_file_with_type_length_etag_and_last_modified(files: tuple[str, int], www: Path) -> None:
    response = request(files, target="/style.css")
    info = (www / "style.css").stat()
    assert response.status == 200
    assert response.body == b"body { color: red }\n"
    assert response.header("Content-Type") == "text/css"
    assert response.header("Content-Length") == str(info.st_size)
    assert response.header("ETag") == f'"{int(info.st_mtime):x}-{info.st_size:x}"'
    assert response.header("Last-Modified") == email.utils.formatdate(info.st_mtime, usegmt=True)
    assert response.header("Accept-Ranges") == "bytes"
    assert response.header("Server") == "edge"


def test_conditional_requests_get_304(files: tuple[str, int]) -> None:
    first = request(files, target="/style.css")
    etag, modified = first.header("ETag"), first.header("Last-Modified")
    assert etag and modified
    by_etag = request(files, target="/style.css", headers={"If-None-Match": etag})
    assert (by_etag.status, by_etag.body, by_etag.header("ETag")) == (304, b"", etag)
    by_date = request(files, target="/style.css", headers={"If-Modified-Since": modified})
    assert by_date.status == 304
    stale = request(files, target="/style.css", headers={"If-None-Match": '"0-0"'})
    assert stale.status == 200


def test_ranges_206_and_416(files: tuple[str, int], www: Path) -> None:
    data = (www / "big.bin").read_bytes()
    part = request(files, target="/big.bin", headers={"Range": "bytes=1000-1999"})
    assert part.status == 206 and part.body == data[1000:2000]
    assert part.header("Content-Range") == f"bytes 1000-1999/{len(data)}"
    tail = request(files, target="/big.bin", headers={"Range": "bytes=-100"})
    assert tail.status == 206 and tail.body == data[-100:]
    outside = request(files, target="/big.bin", headers={"Range": f"bytes={len(data)}-"})
    assert outside.status == 416 and outside.header("Content-Range") == f"bytes */{len(data)}"


def test_several_ranges_are_multipart_from_every_file_path(
    files: tuple[str, int], www: Path
) -> None:
    """Large file (sendfile parts), small file (from memory), cached descriptor (pread)."""
    data = (www / "big.bin").read_bytes()
    big = request(files, target="/big.bin", headers={"Range": "bytes=0-99999,-10"})
    assert big.status == 206
    assert multipart_parts(big) == [
        (f"bytes 0-99999/{len(data)}", data[:100000]),
        (f"bytes {len(data) - 10}-{len(data) - 1}/{len(data)}", data[-10:]),
    ]
    small = request(files, target="/style.css", headers={"Range": "bytes=0-3,5-9"})
    assert multipart_parts(small) == [("bytes 0-3/20", b"body"), ("bytes 5-9/20", b"{ col")]
    cached = request(files, target="/cached/style.css", headers={"Range": "bytes=0-3,5-9"})
    assert multipart_parts(cached) == multipart_parts(small)
    # gzip_static: the ranges are of the .gz file, and the whole response is gzip-coded.
    zipped = request(
        files, target="/style.css", headers={"Range": "bytes=0-1,4-5", "Accept-Encoding": "gzip"}
    )
    assert zipped.header("Content-Encoding") == "gzip"
    assert [payload for _, payload in multipart_parts(zipped)] == [b"\x1f\x8b", b"re"]


def multipart_parts(response: Any) -> list[tuple[str, bytes]]:
    """The (Content-Range, payload) of each part, read with Python's email parser."""
    content_type = response.header("Content-Type") or ""
    assert content_type.startswith("multipart/byteranges; boundary=")
    assert int(response.header("Content-Length") or -1) == len(response.body)
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + response.body
    )
    return [(part["Content-Range"], part.get_payload(decode=True)) for part in message.iter_parts()]


def test_preconditions_and_asctime_dates(files: tuple[str, int]) -> None:
    first = request(files, target="/style.css")
    etag, modified = first.header("ETag") or "", first.header("Last-Modified") or ""
    stamp = email.utils.parsedate_to_datetime(modified).timestamp()
    asctime = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(stamp))
    earlier = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(stamp - 1))
    assert request(files, target="/style.css", headers={"If-Match": etag}).status == 200
    assert request(files, target="/style.css", headers={"If-Match": '"nope"'}).status == 412
    assert (
        request(files, target="/style.css", headers={"If-Unmodified-Since": earlier}).status == 412
    )
    assert (
        request(files, target="/style.css", headers={"If-Unmodified-Since": asctime}).status == 200
    )
    # asctime is GMT (RFC 9110 §5.6.7): it used to be ignored, so this was a 200.
    assert request(files, target="/style.css", headers={"If-Modified-Since": asctime}).status == 304


def test_large_file_arrives_intact(files: tuple[str, int], www: Path) -> None:
    response = request(files, target="/big.bin")
    assert response.status == 200
    assert (
        hashlib.sha256(response.body).digest()
        == hashlib.sha256((www / "big.bin").read_bytes()).digest()
    )


def test_missing_file_is_404_and_logged_like_nginx(
    site: tuple[EdgeProcess, Path, dict[str, tuple[str, int]]],
) -> None:
    edge, www, addresses = site
    mark = len(edge.log())
    response = request(addresses["files"], target="/nope.txt")
    assert response.status == 404 and b"404 Not Found" in response.body
    edge.wait_for_log(
        rf'\[error\] \d+#0: \*\d+ open\(\) "{re.escape(str(www))}/nope.txt" failed '
        r"\(2: No such file or directory\), client: 127\.0\.0\.1",
        start=mark,
    )


def test_head_has_the_headers_and_no_body(files: tuple[str, int]) -> None:
    with socket.create_connection(files, timeout=5) as sock:
        sock.sendall(
            b"HEAD /big.bin HTTP/1.1\r\nHost: a\r\n\r\nGET /style.css HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        head = read_response(sock, head_request=True)
        assert head.status == 200 and head.header("Content-Length") == "300000" and head.body == b""
        after = read_response(sock)  # a body after HEAD would show up here
        assert after.body == b"body { color: red }\n"


def test_other_methods_get_405_with_allow_and_the_connection_lives_on(
    files: tuple[str, int],
) -> None:
    """A well-formed POST/PUT/DELETE on a file is refused as not allowed, not as malformed."""
    with socket.create_connection(files, timeout=5) as sock:
        for head in (
            b"POST /style.css HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
            b"PUT /style.css HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            b"DELETE /style.css HTTP/1.1\r\nHost: a\r\n\r\n",
        ):
            sock.sendall(head)
            refused = read_response(sock)
            assert refused.status == 405, head
            assert refused.header("Allow") == "GET, HEAD"
            assert refused.header("Connection") == "keep-alive"
        sock.sendall(b"GET /style.css HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock).body == b"body { color: red }\n"


def test_gzip_static(files: tuple[str, int]) -> None:
    zipped = request(files, target="/style.css", headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.body == b"\x1f\x8b-pretend-gzip"
    assert zipped.header("Content-Encoding") == "gzip"
    assert zipped.header("Content-Type") == "text/css"
    assert zipped.header("Vary") == "Accept-Encoding"
    plain = request(files, target="/style.css", headers={"Accept-Encoding": "br"})
    assert plain.body == b"body { color: red }\n" and plain.header("Content-Encoding") is None


def test_expires_sets_expires_and_cache_control(files: tuple[str, int]) -> None:
    hour = request(files, target="/hour/style.css")
    assert hour.header("Cache-Control") == "max-age=3600"
    expires = email.utils.parsedate_to_datetime(hour.header("Expires") or "").timestamp()
    assert abs(expires - (time.time() + 3600)) < 5
    longest = request(files, target="/max/style.css")
    assert longest.header("Expires") == "Thu, 31 Dec 2037 23:55:55 GMT"
    assert longest.header("Cache-Control") == "max-age=315360000"
    epoch = request(files, target="/epoch/style.css")
    assert epoch.header("Expires") == "Thu, 01 Jan 1970 00:00:01 GMT"
    assert epoch.header("Cache-Control") == "no-cache"
    assert request(files, target="/style.css").header("Cache-Control") is None


def test_directories_redirect_serve_their_index_or_are_forbidden(files: tuple[str, int]) -> None:
    moved = request(files, target="/sub?x=1")
    assert moved.status == 301 and moved.header("Location") == "/sub/?x=1"
    assert request(files, target="/sub/").body == b"<h1>sub</h1>\n"
    assert request(files, target="/").body == b"<h1>home</h1>\n"
    assert request(files, target="/empty/").status == 403


def test_open_file_cache_revalidates_after_valid(files: tuple[str, int], www: Path) -> None:
    assert request(files, target="/cached/cached.txt").body == b"version one\n"
    (www / "cached.txt").write_text("version two, longer\n")
    time.sleep(0.6)
    assert request(files, target="/cached/cached.txt").body == b"version two, longer\n"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/../secret.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/%2E%2E%2Fsecret.txt", 400),
        ("/sub/..%2f..%2fsecret.txt", 400),
        ("/a%00.html", 400),
        ("/files../secret.txt", 404),  # alias without the trailing slash on the location
        ("/files..%2fsecret.txt", 404),
        ("/link-out", 404),  # a symlink that leaves the root
    ],
)
def test_paths_never_escape_the_root(files: tuple[str, int], target: str, status: int) -> None:
    raw = f"GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
    response, closed = exchange_raw(files, raw)
    assert closed
    assert response.status == status
    assert SECRET not in response.raw


def test_symlinks_inside_the_root_are_followed(files: tuple[str, int]) -> None:
    assert request(files, target="/link-in").body == b"body { color: red }\n"


def test_spa_fallback_with_try_files(
    site: tuple[EdgeProcess, Path, dict[str, tuple[str, int]]],
) -> None:
    spa = site[2]["spa"]
    index = (SPA / "index.html").read_bytes()
    root = request(spa, target="/")
    assert (root.status, root.body, root.header("Content-Type")) == (200, index, "text/html")
    route = request(spa, target="/items/3?tab=reviews")
    assert (route.status, route.body, route.header("Content-Type")) == (200, index, "text/html")
    asset = request(spa, target="/assets/app.css")
    assert asset.body == (SPA / "assets" / "app.css").read_bytes()
    assert asset.header("Content-Type") == "text/css"
    assert request(spa, target="/assets/missing.js").body == index  # as nginx does
    assert request(spa, target="/%2e%2e/%2e%2e/etc/passwd").status == 400


def test_quick_mode_root_and_static_flags(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("quick root\n")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "app.js").write_text("quick static\n")
    edge = start_edge(
        [
            "--listen",
            "127.0.0.1:0",
            "--root",
            "site",
            "--static",
            "/static=assets",
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        log_path=tmp_path / "edge.log",
    )
    try:
        (address,) = edge.ready()
        assert request(address, target="/").body == b"quick root\n"
        static = request(address, target="/static/app.js")
        assert static.body == b"quick static\n"
        assert static.header("Content-Type") == "application/javascript"
        # Normalized to /site/index.html, under the root: no such file there.
        assert request(address, target="/static/../site/index.html").status == 404
    finally:
        edge.stop()
