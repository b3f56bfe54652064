"""edge.handlers.static: the pure HTTP decisions, path safety, the open-file cache, the handler."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import email.utils
import os
import time
from pathlib import Path
from typing import Any

import pytest

from edge.config.schema import Expires, Location, OpenFileCache, Server, StaticHandler
from edge.exchange import ClientError, EdgeError, Exchange, Request
from edge.handlers import InternalRedirect
from edge.handlers.static import (
    CONTAINED_FOR,
    DIRECTORY,
    ESCAPED,
    FILE,
    MISSING,
    SMALL_FILE,
    FileCache,
    StaticFiles,
    accepts_gzip,
    content_type,
    etag_for,
    evaluate_conditions,
    expires_headers,
    inside,
    lookup,
)
from httpproto import entity_tag

# --- pure decisions ------------------------------------------------------------------------


def test_etag_is_nginx_hex_mtime_dash_hex_size() -> None:
    assert etag_for(1700000000.9, 1234) == b'"6553f100-4d2"'
    assert etag_for(1700000000, 1234) == entity_tag(1700000000, 1234).encode()


def _headers(**values: str) -> Any:
    table = {name.replace("_", "-").encode(): value.encode() for name, value in values.items()}
    return table.get


MTIME = 1_700_000_000
ETAG = etag_for(MTIME, 10)
AT = email.utils.formatdate(MTIME, usegmt=True)
BEFORE = email.utils.formatdate(MTIME - 60, usegmt=True)


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("GET", {}, None),
        ("GET", {"if_none_match": ETAG.decode()}, 304),
        ("GET", {"if_modified_since": "Tue Nov 14 22:13:20 2023"}, 304),  # asctime is GMT
        ("GET", {"if_match": '"other"'}, 412),
        ("GET", {"if_unmodified_since": BEFORE}, 412),
        ("GET", {"if_none_match": '"x", *'}, None),  # "*" counts only alone
    ],
)
def test_conditionals_read_edge_headers_into_httpprotos_rules(
    method: str, headers: dict[str, str], expected: int | None
) -> None:
    # The full table of cases is tests/unit/httpproto/test_conditional.py.
    assert evaluate_conditions(method, _headers(**headers), ETAG, MTIME) == expected


def test_expires_follows_nginx() -> None:
    now = 1_000_000.0
    assert expires_headers(Expires("after", 3600), now) == [
        (b"Expires", email.utils.formatdate(now + 3600, usegmt=True).encode()),
        (b"Cache-Control", b"max-age=3600"),
    ]
    assert expires_headers(Expires("max"), now) == [
        (b"Expires", b"Thu, 31 Dec 2037 23:55:55 GMT"),
        (b"Cache-Control", b"max-age=315360000"),
    ]
    assert expires_headers(Expires("epoch"), now) == [
        (b"Expires", b"Thu, 01 Jan 1970 00:00:01 GMT"),
        (b"Cache-Control", b"no-cache"),
    ]
    assert expires_headers(Expires("after", -60), now)[1] == (b"Cache-Control", b"no-cache")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"gzip, deflate, br", True),
        (b"br;q=1.0, gzip;q=0.5", True),
        (b"gzip;q=0", False),
        (b"*", True),
        (b"identity", False),
        (None, False),
    ],
)
def test_accepts_gzip(header: bytes | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_content_types_come_from_the_extension() -> None:
    assert content_type("/a/app.js") == b"application/javascript"
    assert content_type("/a/INDEX.HTML") == b"text/html"
    assert content_type("/a/logo.svg") == b"image/svg+xml"
    assert content_type("/a/noext") == b"application/octet-stream"
    assert content_type("/a.b/noext") == b"application/octet-stream"


def test_inside() -> None:
    assert inside("/srv/static", "/srv/static")
    assert inside("/srv/static/a", "/srv/static")
    assert not inside("/srv/staticfoo", "/srv/static")
    assert inside("/etc", "/")


# --- lookups and path safety ------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "sub" / "page.txt").write_text("page")
    (root / "big.bin").write_bytes(os.urandom(SMALL_FILE + 1))
    (tmp_path / "secret.txt").write_text("secret")
    (root / "out").symlink_to(tmp_path / "secret.txt")
    (root / "in").symlink_to(root / "sub" / "page.txt")
    return root


def _lookup(tree: Path, relative: str, follow: bool = False, keep_fd: bool = False) -> Any:
    base = str(tree)
    return lookup(os.path.join(base, relative), base, os.path.realpath(base), follow, keep_fd)


def test_lookup_reads_small_files_and_keeps_large_ones_open(tree: Path) -> None:
    small = _lookup(tree, "index.html")
    assert small.kind == FILE and small.file.data == b"<h1>home</h1>" and small.file.fd == -1
    large = _lookup(tree, "big.bin")
    assert large.kind == FILE and large.file.data is None and large.file.fd >= 0
    large.file.release()
    assert large.file.fd == -1
    assert _lookup(tree, "sub").kind == DIRECTORY
    assert _lookup(tree, "nope").kind == MISSING


def test_symlinks_are_followed_inside_the_root_only(tree: Path) -> None:
    assert _lookup(tree, "in").kind == FILE
    assert _lookup(tree, "out").kind == ESCAPED
    assert _lookup(tree, "out", follow=True).kind == FILE


def test_a_symlink_swapped_in_for_a_checked_file_is_still_refused(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = str(tree)
    path = os.path.join(base, "sub", "page.txt")
    contained: dict[str, Any] = {}

    def find() -> Any:
        return lookup(path, base, os.path.realpath(base), False, False, contained)

    assert find().kind == FILE
    assert path in contained  # checked once: the next request skips the readlink
    calls: list[int] = []
    real_readlink = os.readlink
    monkeypatch.setattr(os, "readlink", lambda p: calls.append(1) or real_readlink(p))
    assert find().kind == FILE and not calls
    # Swapped for a link to a file outside: another inode, so it is checked and refused.
    os.unlink(path)
    os.symlink(tree.parent / "secret.txt", path)
    assert find().kind == ESCAPED and calls


def test_a_checked_file_is_checked_again_after_a_moment(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = str(tree)
    path = os.path.join(base, "index.html")
    contained: dict[str, Any] = {}
    assert lookup(path, base, os.path.realpath(base), False, False, contained).kind == FILE
    device, inode, checked = contained[path]
    contained[path] = (device, inode, checked - CONTAINED_FOR)
    calls: list[int] = []
    real_readlink = os.readlink
    monkeypatch.setattr(os, "readlink", lambda p: calls.append(1) or real_readlink(p))
    assert lookup(path, base, os.path.realpath(base), False, False, contained).kind == FILE
    assert calls


def test_textual_escapes_never_leave_the_root(tree: Path) -> None:
    assert _lookup(tree, "../secret.txt").kind == ESCAPED
    assert _lookup(tree, "sub/../../secret.txt", follow=True).kind == ESCAPED


def test_file_cache_bounds_revalidates_and_closes_only_unused_files(tree: Path) -> None:
    cache = FileCache(OpenFileCache(max=2, inactive=10, valid=5, errors=False))
    # Keys are the files' paths: a cached file is re-stat()ed at most once a second.
    first = _lookup(tree, "big.bin", keep_fd=True)
    cache.put(first.path, first, now=0)
    hit = cache.get(first.path, now=1)
    assert hit is first and first.file.refs == 2
    first.file.release()
    first.file.release()  # both requests are done; the cache still holds the descriptor
    assert first.file.fd >= 0
    a = _lookup(tree, "index.html", keep_fd=True)
    cache.put(a.path, a, now=1)
    b = _lookup(tree, "sub/page.txt", keep_fd=True)
    cache.put(b.path, b, now=1)
    assert len(cache) == 2 and first.file.fd == -1  # evicted and closed
    assert cache.get(a.path, now=7) is None  # older than valid: looked up again
    missing = _lookup(tree, "nope")
    cache.put(missing.path, missing, now=1)
    assert cache.get(missing.path, now=1) is None  # errors: off


def test_file_cache_drops_a_file_that_changed_at_its_next_stat(tree: Path) -> None:
    cache = FileCache(OpenFileCache(max=10, inactive=60, valid=60, errors=False))
    found = _lookup(tree, "index.html", keep_fd=True)
    cache.put(found.path, found, now=0)
    assert cache.get(found.path, now=0.5) is found  # within the second: no stat
    found.file.release()
    Path(found.path).write_bytes(b"changed, and longer than before\n")
    assert cache.get(found.path, now=0.9) is found  # still within the second
    found.file.release()
    assert cache.get(found.path, now=1.5) is None  # the stat saw the new size
    found.file.release()  # the lookup's own reference
    assert found.file.fd == -1


# --- the handler, with a recording response --------------------------------------------------


class RecordingSink:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = b""
        self.started = False
        self.ended = False
        self.calls: list[tuple[str, int]] = []  # ("send" | "sendfile", bytes)

    async def send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> None:
        self.started = True
        self.status = status
        self.headers = {name.lower(): value for name, value in headers}

    async def send(self, data: bytes) -> None:
        self.calls.append(("send", len(data)))
        self.body += data

    async def sendfile(self, file: object, offset: int, count: int) -> None:
        assert isinstance(file, int)
        self.calls.append(("sendfile", count))
        self.body += os.pread(file, count, offset)

    async def end(self) -> None:
        self.ended = True


def _request(location: Location, path: str, method: str = "GET", **headers: str) -> Request:
    return Request(
        method=method,
        target=path.encode(),
        path=path,
        raw_path=path.encode(),
        query=b"",
        http_version="1.1",
        headers=[
            (name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()
        ],
        host="localhost",
        scheme="http",
        client_ip="127.0.0.1",
        client_port=1,
        peer_ip="127.0.0.1",
        server_addr="127.0.0.1",
        server_port=80,
        server=Server(),
        location=location,
        content_length=None,
        chunked=False,
        keep_alive=True,
        started=0.0,
        request_line=f"{method} {path} HTTP/1.1",
    )


def serve(handler: StaticFiles, path: str, method: str = "GET", **headers: str) -> RecordingSink:
    sink = RecordingSink()
    exchange = Exchange(_request(handler.location, path, method, **headers), None, sink)  # type: ignore[arg-type]
    asyncio.run(handler.handle(exchange))
    return sink


def static(path: str, **settings: Any) -> StaticFiles:
    handler = StaticHandler(**settings)
    return StaticFiles(Location(path=path, match="prefix", handler=handler), handler)


def test_root_serves_files_index_and_redirects_directories(tree: Path) -> None:
    handler = static("/", root=str(tree))
    page = serve(handler, "/sub/page.txt")
    assert (
        page.status == 200
        and page.body == b"page"
        and page.headers[b"content-type"] == b"text/plain"
    )
    assert page.headers[b"content-length"] == b"4" and page.headers[b"accept-ranges"] == b"bytes"
    assert serve(handler, "/").body == b"<h1>home</h1>"
    moved = serve(handler, "/sub")
    assert moved.status == 301 and moved.headers[b"location"] == b"/sub/"
    with pytest.raises(EdgeError) as forbidden:
        serve(handler, "/sub/")  # no index.html there and autoindex is off
    assert forbidden.value.status == 403
    with pytest.raises(EdgeError) as missing:
        serve(handler, "/nope.txt")
    assert missing.value.status == 404 and "No such file or directory" in str(missing.value)
    with pytest.raises(EdgeError) as escaped:
        serve(handler, "/out")
    assert escaped.value.status == 404
    with pytest.raises(EdgeError) as post:
        serve(handler, "/index.html", method="POST")
    assert post.value.status == 405


def test_large_files_go_through_sendfile_with_ranges(tree: Path) -> None:
    handler = static("/", root=str(tree))
    data = (tree / "big.bin").read_bytes()
    assert serve(handler, "/big.bin").body == data
    part = serve(handler, "/big.bin", range="bytes=10-19")
    assert part.status == 206 and part.body == data[10:20]
    assert part.headers[b"content-range"] == b"bytes 10-19/%d" % len(data)
    too_far = serve(handler, "/big.bin", range=f"bytes={len(data)}-")
    assert too_far.status == 416 and too_far.headers[b"content-range"] == b"bytes */%d" % len(data)


def test_alias_replaces_the_prefix_and_off_by_slash_cannot_escape(tree: Path) -> None:
    handler = static("/static", alias=str(tree) + "/")  # the classic off-by-slash config
    assert serve(handler, "/static/sub/page.txt").body == b"page"
    with pytest.raises(EdgeError) as escaped:
        serve(handler, "/static../secret.txt")
    assert escaped.value.status == 404


def test_try_files_serves_the_first_match_or_redirects_internally(tree: Path) -> None:
    handler = static("/", root=str(tree), try_files=("$uri", "$uri/", "/index.html"))
    assert serve(handler, "/sub/page.txt").body == b"page"
    assert serve(handler, "/").body == b"<h1>home</h1>"  # "$uri/" -> the index
    with pytest.raises(InternalRedirect) as redirect:
        serve(handler, "/client/side/route")
    assert redirect.value.target == "/index.html"
    named = static("/", root=str(tree), try_files=("$uri", "@app"))
    with pytest.raises(InternalRedirect) as to_named:
        serve(named, "/nope")
    assert to_named.value.target == "@app"
    coded = static("/", root=str(tree), try_files=("$uri", "=418"))
    with pytest.raises(EdgeError) as teapot:
        serve(coded, "/nope")
    assert teapot.value.status == 418


def test_gzip_static_prefers_the_gz_file_and_varies(tree: Path) -> None:
    (tree / "app.js").write_text("plain")
    (tree / "app.js.gz").write_bytes(b"\x1f\x8bcompressed")
    handler = static("/", root=str(tree), gzip_static=True)
    zipped = serve(handler, "/app.js", accept_encoding="gzip, br")
    assert zipped.body == b"\x1f\x8bcompressed"
    assert zipped.headers[b"content-encoding"] == b"gzip"
    assert zipped.headers[b"content-type"] == b"application/javascript"
    assert zipped.headers[b"vary"] == b"Accept-Encoding"
    plain = serve(handler, "/app.js")
    assert plain.body == b"plain" and b"content-encoding" not in plain.headers
    assert plain.headers[b"vary"] == b"Accept-Encoding"


def test_conditional_requests_and_expires(tree: Path) -> None:
    handler = static("/", root=str(tree), expires=Expires("after", 60))
    first = serve(handler, "/index.html")
    assert first.headers[b"cache-control"] == b"max-age=60" and b"expires" in first.headers
    etag = first.headers[b"etag"].decode()
    again = serve(handler, "/index.html", if_none_match=etag)
    assert again.status == 304 and again.body == b"" and again.headers[b"etag"] == etag.encode()
    since = serve(
        handler, "/index.html", if_modified_since=first.headers[b"last-modified"].decode()
    )
    assert since.status == 304
    head = serve(handler, "/index.html", method="HEAD")
    assert head.status == 200 and head.headers[b"content-length"] == b"13"


def test_open_file_cache_serves_from_cached_descriptors(tree: Path) -> None:
    handler = static("/", root=str(tree), open_file_cache=OpenFileCache(max=10, valid=60))
    assert serve(handler, "/sub/page.txt").body == b"page"
    assert handler.cache is not None and len(handler.cache) == 1
    assert serve(handler, "/sub/page.txt", range="bytes=1-2").body == b"ag"
    handler.close()
    assert len(handler.cache) == 0


def parse_multipart(content_type: bytes, body: bytes) -> list[tuple[str, str, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type + b"\r\n\r\n" + body
    )
    assert message.is_multipart()
    return [
        (part.get_content_type(), part["Content-Range"], part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


def test_several_ranges_of_a_large_file_are_multipart_with_zero_copy_parts(tree: Path) -> None:
    data = os.urandom(3 * SMALL_FILE)
    (tree / "huge.bin").write_bytes(data)
    handler = static("/", root=str(tree))
    size = len(data)
    big = SMALL_FILE  # one part larger than SMALL_FILE bytes: 0..SMALL_FILE inclusive
    sink = serve(handler, "/huge.bin", range=f"bytes=0-{big},{size - 10}-,100-199")
    assert sink.status == 206
    content_type = sink.headers[b"content-type"]
    assert content_type.startswith(b"multipart/byteranges; boundary=")
    assert int(sink.headers[b"content-length"]) == len(sink.body)
    assert b"content-range" not in sink.headers
    assert parse_multipart(content_type, sink.body) == [
        ("application/octet-stream", f"bytes 0-{big}/{size}", data[: big + 1]),
        ("application/octet-stream", f"bytes {size - 10}-{size - 1}/{size}", data[-10:]),
        ("application/octet-stream", f"bytes 100-199/{size}", data[100:200]),
    ]
    # The large part goes zero-copy; the heads and the small parts are joined into sends.
    assert sink.calls == [
        ("send", sink.calls[0][1]),
        ("sendfile", big + 1),
        ("send", len(sink.body) - sink.calls[0][1] - (big + 1)),
    ]
    assert sink.calls[0][1] < 200  # just the first part's head


def test_several_ranges_of_a_small_file_go_out_in_one_send(tree: Path) -> None:
    handler = static("/", root=str(tree))
    sink = serve(handler, "/sub/page.txt", range="bytes=0-0,-1")
    assert sink.status == 206 and sink.calls == [("send", len(sink.body))]
    assert parse_multipart(sink.headers[b"content-type"], sink.body) == [
        ("text/plain", "bytes 0-0/4", b"p"),
        ("text/plain", "bytes 3-3/4", b"e"),
    ]


def test_several_ranges_from_a_cached_descriptor(tree: Path) -> None:
    handler = static("/", root=str(tree), open_file_cache=OpenFileCache(max=10, valid=60))
    sink = serve(handler, "/sub/page.txt", range="bytes=0-1,2-3")
    assert [
        payload for *_, payload in parse_multipart(sink.headers[b"content-type"], sink.body)
    ] == [
        b"pa",
        b"ge",
    ]
    assert int(sink.headers[b"content-length"]) == len(sink.body)
    handler.close()


def test_range_rules_shared_with_appserver(tree: Path) -> None:
    handler = static("/", root=str(tree))
    whole = b"<h1>home</h1>"
    # HEAD ignores Range (RFC 9110 §14.2), overlaps and invalid specs get the whole file.
    head = serve(handler, "/index.html", method="HEAD", range="bytes=0-1")
    assert head.status == 200 and head.headers[b"content-length"] == b"13" and head.body == b""
    for header in ("bytes=0-,0-", "bytes=5-3", "bytes=5-3,0-1", "items=0-1"):
        sink = serve(handler, "/index.html", range=header)
        assert (sink.status, sink.body) == (200, whole), header
    # Unsatisfiable ranges are dropped; none left is a 416.
    one = serve(handler, "/index.html", range="bytes=100-,0-3")
    assert one.status == 206 and one.body == b"<h1>"
    assert one.headers[b"content-range"] == b"bytes 0-3/13"
    none = serve(handler, "/index.html", range="bytes=100-,200-")
    assert none.status == 416 and none.headers[b"content-range"] == b"bytes */13"
    # A stale If-Range: the whole file, even for several ranges.
    stale = serve(handler, "/index.html", range="bytes=0-1,3-4", if_range='"old"')
    assert stale.status == 200 and stale.body == whole


def test_empty_file_ignores_range(tree: Path) -> None:
    (tree / "empty.txt").write_bytes(b"")
    handler = static("/", root=str(tree))
    for header in ("bytes=0-", "bytes=0-0", "bytes=-5"):
        sink = serve(handler, "/empty.txt", range=header)
        assert sink.status == 200 and sink.headers[b"content-length"] == b"0"


def test_preconditions_on_files(tree: Path) -> None:
    handler = static("/", root=str(tree))
    first = serve(handler, "/index.html")
    etag = first.headers[b"etag"].decode()
    modified = first.headers[b"last-modified"].decode()
    assert serve(handler, "/index.html", if_match=etag).status == 200
    with pytest.raises(ClientError) as failed:
        serve(handler, "/index.html", if_match='"other"')
    assert failed.value.status == 412
    with pytest.raises(ClientError) as stale:
        serve(handler, "/index.html", if_unmodified_since="Thu Jan  1 00:00:00 1970")
    assert stale.value.status == 412
    asctime = time.strftime(
        "%a %b %e %H:%M:%S %Y", time.gmtime(email.utils.parsedate_to_datetime(modified).timestamp())
    )
    assert serve(handler, "/index.html", if_modified_since=asctime).status == 304
