from __future__ import annotations

import email.parser
import email.policy
import os
import socket
import threading
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from appserver.staticmap import (
    StaticFile,
    StaticMap,
    StaticResponse,
    evaluate,
    evaluate_request,
    send_static_body,
)

MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
BODY = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/static/{app.js,css/site.css,...}, tmp/secret.txt outside the map."""
    static = tmp_path / "static"
    (static / "css").mkdir(parents=True)
    (static / "app.js").write_bytes(BODY)
    (static / "css" / "site.css").write_text("body{}")
    (static / "index.html").write_text("<p>hi</p>")
    (static / "empty.txt").write_bytes(b"")
    (static / "café.txt").write_text("utf-8 name")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (tmp_path / "static-other").mkdir()
    (tmp_path / "static-other" / "x.txt").write_text("other")
    os.utime(static / "app.js", (MTIME, MTIME))
    return tmp_path


@pytest.fixture
def smap(tree: Path) -> StaticMap:
    return StaticMap((("/static", str(tree / "static")),))


def native(text: str) -> str:
    """A PEP 3333 native string: the UTF-8 bytes of ``text`` as latin-1 characters."""
    return text.encode("utf-8").decode("latin-1")


# --- lookup -------------------------------------------------------------------------


def test_lookup_finds_a_file(smap: StaticMap, tree: Path) -> None:
    found = smap.lookup("/static/app.js")
    assert found is not None
    assert found.path == str((tree / "static" / "app.js").resolve())
    assert found.size == 1024
    assert found.mtime == MTIME
    # nginx's ETag, the one edge gives the same file: whole seconds, not nanoseconds.
    assert found.etag == f'"{MTIME:x}-{1024:x}"' == '"6553f100-400"'
    assert found.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert found.content_type == "text/javascript; charset=utf-8"


def test_lookup_nested_and_dot_segments(smap: StaticMap) -> None:
    assert smap.lookup("/static/css/site.css") is not None
    assert smap.lookup("/static/./css//site.css") is not None


def test_missing_file_falls_through(smap: StaticMap) -> None:
    assert smap.lookup("/static/nope.js") is None


def test_unmapped_prefix_falls_through(smap: StaticMap) -> None:
    assert smap.lookup("/media/app.js") is None
    assert smap.lookup("/") is None
    assert smap.lookup("") is None


def test_prefix_matches_on_segment_boundary_only(smap: StaticMap) -> None:
    # uWSGI's plain string prefix would map /staticapp.js to <dir>/app.js.
    assert smap.lookup("/staticapp.js") is None


def test_directory_is_never_served(smap: StaticMap) -> None:
    assert smap.lookup("/static") is None
    assert smap.lookup("/static/") is None
    assert smap.lookup("/static/css") is None


@pytest.mark.parametrize(
    "path_info",
    [
        "/static/../secret.txt",
        "/static/css/../../secret.txt",
        "/static/..",
        "/static/../static-other/x.txt",  # a sibling sharing the prefix string
        "/static/%2e%2e/secret.txt",  # literal "%2e%2e": no such file
        "/static/..\\secret.txt",
        "/static\\..\\secret.txt",
        "/static/app.js\x00.png",
        "/static/\x00",
    ],
)
def test_traversal_attempts_fall_through(smap: StaticMap, path_info: str) -> None:
    assert smap.lookup(path_info) is None


def test_percent_decoded_dotdot_is_refused(tree: Path) -> None:
    # PATH_INFO arrives percent-decoded: "/static/%2e%2e/secret.txt" is this.
    smap = StaticMap((("/static", str(tree / "static")),))
    assert smap.lookup("/static/../secret.txt") is None
    # Even a ".." that would land back inside the root is refused.
    assert smap.lookup("/static/css/../app.js") is None


def test_symlink_out_of_root_is_refused(tree: Path) -> None:
    static = tree / "static"
    (static / "leak.txt").symlink_to(tree / "secret.txt")
    (static / "leakdir").symlink_to(tree)
    smap = StaticMap((("/static", str(static)),))
    assert smap.lookup("/static/leak.txt") is None
    assert smap.lookup("/static/leakdir/secret.txt") is None


def test_symlink_inside_root_is_served(tree: Path) -> None:
    static = tree / "static"
    (static / "alias.js").symlink_to(static / "app.js")
    found = StaticMap((("/static", str(static)),)).lookup("/static/alias.js")
    assert found is not None
    assert found.path == str((static / "app.js").resolve())


def test_symlink_loop_falls_through(tree: Path) -> None:
    static = tree / "static"
    (static / "loop").symlink_to(static / "loop")
    assert StaticMap((("/static", str(static)),)).lookup("/static/loop") is None


def test_root_that_is_a_symlink_is_followed(tree: Path) -> None:
    link = tree / "current"
    link.symlink_to(tree / "static")
    assert StaticMap((("/static", str(link)),)).lookup("/static/app.js") is not None


def test_utf8_file_name(smap: StaticMap) -> None:
    found = smap.lookup(native("/static/café.txt"))
    assert found is not None
    assert found.path.endswith("café.txt")


def test_longest_prefix_wins_then_falls_back(tree: Path) -> None:
    (tree / "static" / "css" / "only-in-static.css").write_text("x")
    smap = StaticMap(
        (
            ("/static", str(tree / "static")),
            ("/static/css", str(tree / "static-other")),
        )
    )
    # /static/css/x.txt exists only under static-other: the longer prefix.
    found = smap.lookup("/static/css/x.txt")
    assert found is not None and found.path.endswith("static-other/x.txt")
    # Missing under the longer prefix's dir: the shorter mapping is tried next.
    found = smap.lookup("/static/css/only-in-static.css")
    assert found is not None and found.path.endswith("static/css/only-in-static.css")


def test_trailing_slash_prefix_and_root_prefix(tree: Path) -> None:
    assert StaticMap((("/static/", str(tree / "static")),)).lookup("/static/app.js")
    assert StaticMap((("/", str(tree / "static")),)).lookup("/app.js")


def test_prefix_mapped_to_a_single_file(tree: Path) -> None:
    smap = StaticMap((("/favicon.ico", str(tree / "static" / "app.js")),))
    assert smap.lookup("/favicon.ico") is not None
    assert smap.lookup("/favicon.ico/x") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.html", "text/html; charset=utf-8"),
        ("a.css", "text/css; charset=utf-8"),
        ("a.txt", "text/plain; charset=utf-8"),
        ("a.mjs", "text/javascript; charset=utf-8"),
        ("a.json", "application/json"),
        ("a.png", "image/png"),
        ("a.svg", "image/svg+xml"),
        ("a.woff2", "font/woff2"),
        ("a.tar.gz", "application/gzip"),
        ("a.unknownext", "application/octet-stream"),
        ("README", "application/octet-stream"),
    ],
)
def test_content_types(tmp_path: Path, name: str, expected: str) -> None:
    (tmp_path / name).write_bytes(b"x")
    found = StaticMap((("/s", str(tmp_path)),)).lookup("/s/" + name)
    assert found is not None
    assert found.content_type == expected


def test_same_file_detects_replacement(smap: StaticMap, tree: Path) -> None:
    found = smap.lookup("/static/app.js")
    assert found is not None
    assert found.same_file(os.stat(found.path))
    replacement = tree / "static" / "new.js"
    replacement.write_bytes(BODY)
    os.replace(replacement, tree / "static" / "app.js")
    assert not found.same_file(os.stat(found.path))


# --- evaluate -------------------------------------------------------------------------


@pytest.fixture
def app_js(smap: StaticMap) -> StaticFile:
    found = smap.lookup("/static/app.js")
    assert found is not None
    return found


def get(
    sf: StaticFile,
    method: str = "GET",
    inm: str | None = None,
    ims: str | None = None,
    rng: str | None = None,
    if_range: str | None = None,
) -> StaticResponse:
    response = evaluate(sf, method, inm, ims, rng, if_range)
    assert response is not None
    return response


def test_plain_get(app_js: StaticFile) -> None:
    response = get(app_js)
    assert response.status == "200 OK"
    assert response.status_code == 200
    assert dict(response.headers) == {
        "Content-Type": "text/javascript; charset=utf-8",
        "Content-Length": "1024",
        "ETag": app_js.etag,
        "Last-Modified": app_js.last_modified,
        "Accept-Ranges": "bytes",
    }
    assert response.byte_range == (0, 1024)
    assert response.send_body


def test_head_sends_headers_only(app_js: StaticFile) -> None:
    response = get(app_js, "HEAD")
    assert response.status == "200 OK"
    assert ("Content-Length", "1024") in response.headers
    assert response.byte_range is None
    assert not response.send_body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "get"])
def test_other_methods_fall_through_to_the_app(app_js: StaticFile, method: str) -> None:
    assert evaluate(app_js, method, None, None, None) is None


@pytest.mark.parametrize(
    "inm",
    ["ETAG", "W/ETAG", '"nope", ETAG', '"a,b", W/ETAG , "c"', "*"],
)
def test_if_none_match_gives_304(app_js: StaticFile, inm: str) -> None:
    response = get(app_js, inm=inm.replace("ETAG", app_js.etag))
    assert response.status == "304 Not Modified"
    assert dict(response.headers) == {"ETag": app_js.etag, "Last-Modified": app_js.last_modified}
    assert not response.send_body and response.byte_range is None


def test_if_none_match_on_head(app_js: StaticFile) -> None:
    assert get(app_js, "HEAD", inm=app_js.etag).status == "304 Not Modified"


def test_if_none_match_mismatch_gives_200(app_js: StaticFile) -> None:
    assert get(app_js, inm='"other"').status == "200 OK"


def test_if_modified_since(app_js: StaticFile) -> None:
    assert get(app_js, ims=formatdate(MTIME, usegmt=True)).status == "304 Not Modified"
    assert get(app_js, ims=formatdate(MTIME + 60, usegmt=True)).status == "304 Not Modified"
    assert get(app_js, ims=formatdate(MTIME - 1, usegmt=True)).status == "200 OK"
    # RFC 850 and asctime forms are HTTP-dates too.
    assert get(app_js, ims="Tuesday, 14-Nov-23 22:13:20 GMT").status == "304 Not Modified"
    assert get(app_js, ims="Tue Nov 14 22:13:20 2023").status == "304 Not Modified"
    # An invalid date is ignored.
    assert get(app_js, ims="yesterday").status == "200 OK"


def test_if_none_match_wins_over_if_modified_since(app_js: StaticFile) -> None:
    fresh = formatdate(MTIME + 60, usegmt=True)
    stale = formatdate(MTIME - 60, usegmt=True)
    # INM mismatch + IMS that would say 304: INM decides, 200.
    assert get(app_js, inm='"other"', ims=fresh).status == "200 OK"
    # INM match + IMS that would say modified: INM decides, 304.
    assert get(app_js, inm=app_js.etag, ims=stale).status == "304 Not Modified"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=0-0", 0, 0),
        ("bytes=100-", 100, 1023),
        ("bytes=-500", 524, 1023),
        ("bytes=-5000", 0, 1023),
        ("bytes=1000-5000", 1000, 1023),
        ("BYTES = 10 - 19", 10, 19),
        ("bytes=1023-", 1023, 1023),
    ],
)
def test_single_ranges(app_js: StaticFile, header: str, first: int, last: int) -> None:
    response = get(app_js, rng=header)
    assert response.status == "206 Partial Content"
    headers = dict(response.headers)
    assert headers["Content-Range"] == f"bytes {first}-{last}/1024"
    assert headers["Content-Length"] == str(last - first + 1)
    assert response.byte_range == (first, last - first + 1)
    assert response.send_body


@pytest.mark.parametrize("header", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
def test_unsatisfiable_range_gives_416(app_js: StaticFile, header: str) -> None:
    response = get(app_js, rng=header)
    assert response.status == "416 Range Not Satisfiable"
    headers = dict(response.headers)
    assert headers["Content-Range"] == "bytes */1024"
    assert headers["Content-Length"] == "0"
    assert not response.send_body and response.byte_range is None


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-99,200-299",  # several ranges, to a caller that cannot send multipart
        "items=0-5",
        "bytes=5-3",
        "bytes=-",
        "bytes=abc",
        "bytes=٣-٤",  # non-ASCII digits
        "0-99",
    ],
)
def test_ignored_range_gives_200(app_js: StaticFile, header: str) -> None:
    response = get(app_js, rng=header)
    assert response.status == "200 OK"
    assert response.byte_range == (0, 1024)


def test_range_is_ignored_for_head(app_js: StaticFile) -> None:
    response = get(app_js, "HEAD", rng="bytes=0-9")
    assert response.status == "200 OK"
    assert not response.send_body


def test_range_on_empty_file(smap: StaticMap) -> None:
    empty = smap.lookup("/static/empty.txt")
    assert empty is not None
    response = get(empty, rng="bytes=0-")
    assert response.status == "200 OK"
    assert response.byte_range == (0, 0)


def test_if_range(app_js: StaticFile) -> None:
    assert get(app_js, rng="bytes=0-9", if_range=app_js.etag).status_code == 206
    assert get(app_js, rng="bytes=0-9", if_range=app_js.last_modified).status_code == 206
    # A different or weak validator: the whole file instead.
    assert get(app_js, rng="bytes=0-9", if_range='"old"').status_code == 200
    assert get(app_js, rng="bytes=0-9", if_range="W/" + app_js.etag).status_code == 200
    earlier = formatdate(MTIME - 1, usegmt=True)
    assert get(app_js, rng="bytes=0-9", if_range=earlier).status_code == 200


def test_conditional_beats_range(app_js: StaticFile) -> None:
    assert get(app_js, inm=app_js.etag, rng="bytes=0-9").status == "304 Not Modified"


def test_mtime_is_floored_from_nanoseconds(tree: Path) -> None:
    path = tree / "static" / "app.js"
    # The float st_mtime of this instant rounds up into the next second.
    os.utime(path, ns=(MTIME * 10**9 + 999_999_999, MTIME * 10**9 + 999_999_999))
    found = StaticMap((("/static", str(tree / "static")),)).lookup("/static/app.js")
    assert found is not None
    assert found.mtime == MTIME
    assert found.last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert found.etag == '"6553f100-400"'


# --- evaluate_request: the worker's call, every header from the environ -----------------


def answer(sf: StaticFile, method: str = "GET", **headers: str) -> StaticResponse:
    environ = {"REQUEST_METHOD": method}
    environ.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    response = evaluate_request(sf, environ)
    assert response is not None
    return response


def test_evaluate_request_falls_through_for_other_methods(app_js: StaticFile) -> None:
    assert evaluate_request(app_js, {"REQUEST_METHOD": "POST"}) is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"if_match": "ETAG"}, 200),
        ({"if_match": "*"}, 200),
        ({"if_match": '"other"'}, 412),
        ({"if_match": "W/ETAG"}, 412),  # strong comparison
        ({"if_unmodified_since": formatdate(MTIME, usegmt=True)}, 200),
        ({"if_unmodified_since": formatdate(MTIME - 1, usegmt=True)}, 412),
        ({"if_unmodified_since": "Tue Nov 14 22:13:19 2023"}, 412),  # asctime is GMT
        ({"if_unmodified_since": "garbage"}, 200),
        ({"if_match": "ETAG", "if_unmodified_since": formatdate(MTIME - 1, usegmt=True)}, 200),
        ({"if_modified_since": "Tue Nov 14 22:13:20 2023"}, 304),
        ({"if_none_match": '"x", *'}, 200),  # "*" only as the whole value
        ({"if_none_match": "junkETAGjunk"}, 200),  # not an entity-tag list
    ],
)
def test_all_four_preconditions(app_js: StaticFile, headers: dict[str, str], status: int) -> None:
    filled = {name: value.replace("ETAG", app_js.etag) for name, value in headers.items()}
    assert answer(app_js, **filled).status_code == status


def test_precondition_failed_sends_validators_and_no_body(app_js: StaticFile) -> None:
    response = answer(app_js, if_match='"other"')
    assert response.status == "412 Precondition Failed"
    assert dict(response.headers) == {
        "ETag": app_js.etag,
        "Last-Modified": app_js.last_modified,
        "Content-Length": "0",
    }
    assert not response.send_body and response.content_length == 0


def test_several_ranges_get_multipart_byteranges(app_js: StaticFile) -> None:
    response = answer(app_js, range="bytes=0-9, 100-199,1000-")
    assert response.status == "206 Partial Content"
    headers = dict(response.headers)
    assert response.multipart is not None and response.byte_range is None
    assert headers["Content-Type"] == response.multipart.content_type
    assert headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert "Content-Range" not in headers
    assert headers["Content-Length"] == str(response.content_length)
    body = response.multipart.render(BODY)
    assert len(body) == response.content_length
    parts = parse_multipart(headers["Content-Type"], body)
    assert parts == [
        ("text/javascript", "bytes 0-9/1024", BODY[0:10]),
        ("text/javascript", "bytes 100-199/1024", BODY[100:200]),
        ("text/javascript", "bytes 1000-1023/1024", BODY[1000:]),
    ]


def test_one_satisfiable_range_of_several_is_a_plain_206(app_js: StaticFile) -> None:
    response = answer(app_js, range="bytes=5000-,0-9")
    assert response.status_code == 206 and response.multipart is None
    assert ("Content-Range", "bytes 0-9/1024") in response.headers
    assert response.byte_range == (0, 10)


@pytest.mark.parametrize("header", ["bytes=0-,0-", "bytes=5-3,0-9", "bytes=0-9,x"])
def test_overlapping_or_invalid_ranges_get_the_whole_file(app_js: StaticFile, header: str) -> None:
    response = answer(app_js, range=header)
    assert response.status_code == 200 and response.byte_range == (0, 1024)


def test_several_ranges_and_head_or_stale_if_range(app_js: StaticFile) -> None:
    assert answer(app_js, "HEAD", range="bytes=0-1,5-6").status_code == 200
    assert answer(app_js, range="bytes=0-1,5-6", if_range='"old"').status_code == 200
    assert answer(app_js, range="bytes=0-1,5-6", if_range=app_js.etag).status_code == 206


def parse_multipart(content_type: str, body: bytes) -> list[tuple[str, str, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    return [
        (part.get_content_type(), part["Content-Range"], part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


# --- send_static_body over a real socket ------------------------------------------------


def send_and_receive(sf: StaticFile, response: StaticResponse) -> tuple[int, bytes]:
    left, right = socket.socketpair()
    received: list[bytes] = []

    def drain() -> None:
        while data := right.recv(65536):
            received.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        with open(sf.path, "rb") as handle, left:
            sent = send_static_body(left, handle, response, timeout=5.0)
    finally:
        reader.join(10)
        right.close()
    return sent, b"".join(received)


def test_send_static_body_sends_every_part(app_js: StaticFile) -> None:
    response = answer(app_js, range="bytes=1000-,0-9,500-509")
    sent, body = send_and_receive(app_js, response)
    assert sent == len(body) == response.content_length
    assert response.multipart is not None and body == response.multipart.render(BODY)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, BODY), ({"range": "bytes=10-19"}, BODY[10:20]), ({"if_none_match": "*"}, b"")],
)
def test_send_static_body_single_part_and_no_body(
    app_js: StaticFile, headers: dict[str, Any], expected: bytes
) -> None:
    response = answer(app_js, **headers)
    sent, body = send_and_receive(app_js, response)
    assert sent == len(body) == response.content_length == len(expected)
    assert body == expected
