"""One set of HTTP rules, two servers: edge's static files and appserver's static-map.

Both serve the same directory under the same URL.  Each test asks both with
Debian's curl (or a raw socket, for pipelining) and checks what a client sees:
the same validators, the same preconditions, and several ranges answered with
multipart/byteranges whose parts are the file's very bytes.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import WSGI_APP
from tests.support.edge import read_response, start_edge, write_config
from tests.support.processes import ServerProcess, appserver

SIZE = 300_000  # larger than edge's SMALL_FILE, so its large parts go through sendfile
MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
SERVERS = ("edge", "appserver")


@dataclass
class Site:
    data: bytes
    addresses: dict[str, tuple[str, int]]
    processes: dict[str, ServerProcess]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if shutil.which("curl") is None:
        pytest.fail("curl is not installed (apt-get install curl)", pytrace=False)
    directory = tmp_path_factory.mktemp("rules")
    static = directory / "static"
    static.mkdir()
    data = os.urandom(SIZE)
    (static / "data.bin").write_bytes(data)
    (static / "page.txt").write_text("0123456789abcdef")
    for name in ("data.bin", "page.txt"):
        os.utime(static / name, (MTIME, MTIME))
    config = write_config(
        directory,
        f"""
error_log: {{level: error}}
worker_processes: 1
servers:
  - listen: 127.0.0.1:0
    locations:
      - path: /static/
        alias: {static}/
""",
    )
    edge = start_edge(["-c", str(config)], cwd=directory, log_path=directory / "edge.log")
    app = appserver(
        [
            "--http-socket",
            "127.0.0.1:0",
            "--wsgi-file",
            str(WSGI_APP),
            "--master",
            "--static-map",
            f"/static={static}",
        ],
        cwd=directory,
        log_path=directory / "appserver.log",
    )
    try:
        (edge_address,) = edge.ready(1)
        app.wait_ready(1)
        yield Site(
            data,
            {"edge": edge_address, "appserver": app.address("http")},
            {"edge": edge, "appserver": app},
        )
    finally:
        edge.stop()
        app.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def curl(site: Site, server: str, path: str, *options: str, tmp: Path) -> Answer:
    """One request with curl; the status, headers and body it received."""
    host, port = site.addresses[server]
    head_file, body_file = tmp / "head.txt", tmp / "body.bin"
    subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--http1.1",
            "--max-time",
            "20",
            "--dump-header",
            str(head_file),
            "--output",
            str(body_file),
            *options,
            f"http://{host}:{port}{path}",
        ],
        check=True,
        timeout=30,
    )
    lines = head_file.read_bytes().decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = body_file.read_bytes() if body_file.exists() else b""
    body_file.unlink(missing_ok=True)
    return Answer(status, headers, body)


def parts_by_email_parser(answer: Answer) -> list[tuple[str, str, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + answer.headers["content-type"].encode() + b"\r\n\r\n" + answer.body
    )
    assert message.is_multipart()
    return [
        (part.get_content_type(), part["Content-Range"], part.get_payload(decode=True))
        for part in message.iter_parts()
    ]


def parts_by_hand(answer: Answer) -> list[tuple[dict[str, str], bytes]]:
    """RFC 9110 §14.6 read strictly: each part's length comes from its Content-Range."""
    match = re.fullmatch(
        r"multipart/byteranges; boundary=([0-9]{20})", answer.headers["content-type"]
    )
    assert match, answer.headers["content-type"]
    delimiter = b"\r\n--" + match.group(1).encode()
    body, position, parts = answer.body, 0, []
    while True:
        assert body.startswith(delimiter, position), body[position : position + 80]
        position += len(delimiter)
        if body[position:] == b"--\r\n":
            return parts
        head_end = body.index(b"\r\n\r\n", position)
        fields = dict(
            line.split(": ", 1) for line in body[position + 2 : head_end].decode().split("\r\n")
        )
        first, last = map(
            int, re.fullmatch(r"bytes (\d+)-(\d+)/\d+", fields["Content-Range"]).groups()
        )  # type: ignore[union-attr]
        start = head_end + 4
        parts.append((fields, body[start : start + last - first + 1]))
        position = start + last - first + 1


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


def test_both_servers_give_a_file_the_same_validators(site: Site, tmp: Path) -> None:
    edge = curl(site, "edge", "/static/data.bin", tmp=tmp)
    app = curl(site, "appserver", "/static/data.bin", tmp=tmp)
    # nginx's ETag, whole seconds and size in hex.
    assert edge.headers["etag"] == app.headers["etag"] == f'"{MTIME:x}-{SIZE:x}"'
    assert edge.headers["last-modified"] == app.headers["last-modified"]
    assert edge.headers["last-modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert edge.body == app.body == site.data


@pytest.mark.parametrize("server", SERVERS)
def test_several_ranges_get_multipart_byteranges(site: Site, server: str, tmp: Path) -> None:
    data = site.data
    # A part larger than 64 KB (edge: sendfile), small ones, a suffix, out of order.
    answer = curl(
        site, server, "/static/data.bin", "-r", "1000-99999,0-9,-500,200000-200099", tmp=tmp
    )
    assert answer.status == 206
    assert int(answer.headers["content-length"]) == len(answer.body)
    assert "content-range" not in answer.headers
    expected = [
        (f"bytes 1000-99999/{SIZE}", data[1000:100000]),
        (f"bytes 0-9/{SIZE}", data[:10]),
        (f"bytes {SIZE - 500}-{SIZE - 1}/{SIZE}", data[-500:]),
        (f"bytes 200000-200099/{SIZE}", data[200000:200100]),
    ]
    assert [(r, payload) for _, r, payload in parts_by_email_parser(answer)] == expected
    by_hand = parts_by_hand(answer)
    assert [(fields["Content-Range"], payload) for fields, payload in by_hand] == expected
    assert all(fields["Content-Type"] == "application/octet-stream" for fields, _ in by_hand)


@pytest.mark.parametrize("server", SERVERS)
def test_multipart_parts_carry_the_files_type_with_its_charset(
    site: Site, server: str, tmp: Path
) -> None:
    answer = curl(site, server, "/static/page.txt", "-r", "0-1,10-", tmp=tmp)
    assert answer.status == 206
    parts = parts_by_hand(answer)
    assert [payload for _, payload in parts] == [b"01", b"abcdef"]
    plain = curl(site, server, "/static/page.txt", tmp=tmp)
    # Each part repeats what the whole file is sent as (edge: text/plain; the
    # static-map adds a charset to text types), as nginx does.
    assert {fields["Content-Type"] for fields, _ in parts} == {plain.headers["content-type"]}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("ranges", "status", "body"),
    [
        ("0-,0-", 200, slice(None)),  # overlaps adding up to more than the file (nginx)
        ("5-3,0-1", 200, slice(None)),  # an invalid range-spec voids the header (RFC 9110)
        ("400000-,0-9", 206, slice(0, 10)),  # the unsatisfiable one is dropped
        ("400000-,500000-", 416, None),
    ],
)
def test_overlapping_invalid_and_unsatisfiable_ranges(
    site: Site, server: str, ranges: str, status: int, body: slice | None, tmp: Path
) -> None:
    answer = curl(site, server, "/static/data.bin", "-H", f"Range: bytes={ranges}", tmp=tmp)
    assert answer.status == status
    if status == 416:
        assert answer.headers["content-range"] == f"bytes */{SIZE}"
    else:
        assert body is not None and answer.body == site.data[body]
    if status == 206:
        assert answer.headers["content-range"] == f"bytes 0-9/{SIZE}"


@pytest.mark.parametrize("server", SERVERS)
def test_head_and_a_stale_if_range_ignore_range(site: Site, server: str, tmp: Path) -> None:
    head = curl(site, server, "/static/data.bin", "--head", "-r", "0-9,20-29", tmp=tmp)
    assert head.status == 200 and head.headers["content-length"] == str(SIZE)
    stale = curl(
        site, server, "/static/data.bin", "-r", "0-9,20-29", "-H", 'If-Range: "old"', tmp=tmp
    )
    assert stale.status == 200 and stale.body == site.data
    etag = head.headers["etag"]
    fresh = curl(
        site, server, "/static/data.bin", "-r", "0-9,20-29", "-H", f"If-Range: {etag}", tmp=tmp
    )
    assert fresh.status == 206 and [p for _, p in parts_by_hand(fresh)] == [
        site.data[:10],
        site.data[20:30],
    ]


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize(
    ("header", "status"),
    [
        (f'If-Match: "{MTIME:x}-{SIZE:x}"', 200),
        ("If-Match: *", 200),
        ('If-Match: "other"', 412),
        (f'If-Match: W/"{MTIME:x}-{SIZE:x}"', 412),  # strong comparison
        ("If-Unmodified-Since: Tue, 14 Nov 2023 22:13:20 GMT", 200),
        ("If-Unmodified-Since: Tue, 14 Nov 2023 22:13:19 GMT", 412),
        ("If-Unmodified-Since: Tue Nov 14 22:13:19 2023", 412),  # asctime, read as GMT
        ("If-Modified-Since: Tue Nov 14 22:13:20 2023", 304),
        ("If-Modified-Since: Tuesday, 14-Nov-23 22:13:20 GMT", 304),
        ("If-Modified-Since: Tue Nov 14 22:13:19 2023", 200),
        ('If-None-Match: "x", *', 200),  # "*" counts only as the whole value
        (f'If-None-Match: "a,b", W/"{MTIME:x}-{SIZE:x}"', 304),
    ],
)
def test_preconditions(site: Site, server: str, header: str, status: int, tmp: Path) -> None:
    answer = curl(site, server, "/static/data.bin", "-H", header, tmp=tmp)
    assert answer.status == status
    if status == 200:
        assert hashlib.sha256(answer.body).digest() == hashlib.sha256(site.data).digest()
    if status == 304:
        assert answer.body == b"" and answer.headers["etag"] == f'"{MTIME:x}-{SIZE:x}"'


@pytest.mark.parametrize("server", SERVERS)
def test_a_multipart_response_keeps_the_connection_in_step(site: Site, server: str) -> None:
    """Pipelined after a multipart body, the next response must start where it ends."""
    with socket.create_connection(site.addresses[server], timeout=10) as sock:
        sock.sendall(
            b"GET /static/data.bin HTTP/1.1\r\nHost: a\r\nRange: bytes=0-99999,-100000\r\n\r\n"
            b"GET /static/page.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        first = read_response(sock)
        second = read_response(sock)
    assert first.status == 206
    assert len(first.body) == int(first.header("Content-Length") or -1)
    assert first.body.endswith(b"--\r\n")
    assert (second.status, second.body) == (200, b"0123456789abcdef")


def test_appserver_sends_multipart_parts_with_sendfile(site: Site, tmp: Path) -> None:
    app = site.processes["appserver"]
    answer = curl(site, "appserver", "/static/data.bin?log-me", "-r", "0-9,100-109", tmp=tmp)
    assert answer.status == 206
    app.wait_for_log(
        rf"GET /static/data\.bin\?log-me => generated {len(answer.body)} bytes in \d+ msecs via sendfile\(\)"
    )


def test_edge_logs_the_multipart_length(site: Site, tmp: Path) -> None:
    edge = site.processes["edge"]
    answer = curl(site, "edge", "/static/data.bin?log-me", "-r", "0-9,100-109", tmp=tmp)
    assert answer.status == 206
    edge.wait_for_log(rf'"GET /static/data\.bin\?log-me HTTP/1\.1" 206 {len(answer.body)} ')
