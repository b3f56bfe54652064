"""On-the-fly gzip, error_page, add_header (HSTS over TLS) and proxy_intercept_errors in a
real edge, checked with curl (``--compressed`` and raw), Python's ``gzip``, and a real HTTP
upstream (``python -m http.server``)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.certs import TestCa
from tests.support.edge import EdgeProcess, start_edge, write_config
from tests.support.processes import ServerProcess
from tests.support.tls_clients import curl

TEXT = b"".join(b"line %d of a compressible text file\n" % i for i in range(20000))

CONFIG = """
error_log: {{level: info}}
servers:
  - listen: 127.0.0.1:0
    add_header:
      X-Server-Wide: "on $host"
    error_page: "500 502 503 504 /50x.html"
    locations:
      - path: /
        root: {www}
        gzip: on
        gzip_types: [text/plain, application/json]
        gzip_min_length: 1k
        gzip_comp_level: 6
        gzip_vary: on
        add_header:
          X-Frame-Options: DENY
          X-Always: {{value: "seen $uri", always: true}}
        error_page: ["404 /errors/404.html"]
      - path: /errors/
        root: {www}
      - path: = /50x.html
        root: {www}
      - path: /forbidden
        return: 403
        error_page: "403 =200 @forbidden"
      - path: "@forbidden"
        return: {{status: 200, body: "forbidden page for $request_uri\\n"}}
      - path: /moved
        error_page: "404 =301 https://example.test$uri"
        return: 404
      - path: /app/
        proxy: files
        protocol: http
        gzip: on
        gzip_types: text/plain
        gzip_proxied: [auth]
      - path: /intercepted/
        proxy: files
        protocol: http
        proxy_intercept_errors: on
        error_page: "404 /errors/404.html"
      - path: /passed/
        proxy: files
        protocol: http
        error_page: "404 /errors/404.html"
      - path: /down
        proxy: nowhere
        protocol: http
      - path: /echo
        return: {{status: 302, location: "https://$host/next?from=$uri&q=$arg_q"}}
  - listen: "127.0.0.2:0 ssl"
    ssl_certificate: {pair.certificate}
    ssl_certificate_key: {pair.key}
    add_header:
      Strict-Transport-Security: {{value: "max-age=63072000; includeSubDomains", always: true}}
    locations:
      - path: /
        return: {{status: 200, body: "secure\\n"}}
      - path: /missing
        return: 404
upstreams:
  files: {{servers: ["127.0.0.1:{files_port}"]}}
  nowhere: {{servers: ["127.0.0.1:9"]}}
"""


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("www")
    (root / "big.txt").write_bytes(TEXT)
    (root / "small.txt").write_bytes(b"tiny\n")
    (root / "errors").mkdir()
    (root / "errors" / "404.html").write_bytes(b"<h1>custom not found</h1>\n")
    (root / "50x.html").write_bytes(b"<h1>custom server error</h1>\n")
    for name in ("app", "intercepted", "passed"):
        (root / name).mkdir()
        (root / name / "big.txt").write_bytes(TEXT)
    return root


@pytest.fixture(scope="module")
def files_port(www: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    directory = tmp_path_factory.mktemp("files")
    server = ServerProcess(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=www,
        log_path=directory / "http.log",
    ).start()
    try:
        yield int(server.wait_for_log(r"port (\d+)").group(1))
    finally:
        assert server.proc is not None
        server.proc.terminate()
        server.proc.wait(10)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, www: Path, files_port: int, ca: TestCa
) -> Iterator[tuple[EdgeProcess, str, str]]:
    directory = tmp_path_factory.mktemp("edge")
    pair = ca.issue("secure.test", alt_names=("IP:127.0.0.2",))
    config = write_config(directory, CONFIG.format(www=www, files_port=files_port, pair=pair))
    process = start_edge(["-c", str(config)], cwd=directory, log_path=directory / "edge.log")
    try:
        addresses = process.ready(2)
        yield (
            process,
            f"http://{addresses[0][0]}:{addresses[0][1]}",
            f"https://{addresses[1][0]}:{addresses[1][1]}",
        )
    finally:
        process.stop()


def fetch(url: str, *args: str) -> tuple[int, dict[str, str], bytes]:
    """curl -si: status, headers (lower-case names, last wins), body."""
    done = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-D", "-", "-o", "-", *args, url],
        capture_output=True,
        check=True,
    )
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def test_curl_compressed_and_python_gzip_give_the_same_bytes(
    edge: tuple[EdgeProcess, str, str], www: Path
) -> None:
    _process, base, _ = edge
    status, headers, raw = fetch(base + "/big.txt", "-H", "Accept-Encoding: gzip")
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert "content-length" not in headers and "accept-ranges" not in headers
    assert headers["etag"].startswith('W/"')
    assert gzip.decompress(raw) == TEXT
    # 760 KB of repetitive text at level 6: far below a tenth of its size.
    assert len(TEXT) == 768890 and len(raw) < len(TEXT) // 10, len(raw)
    done = subprocess.run(
        ["curl", "-sS", "--compressed", base + "/big.txt"], capture_output=True, check=True
    )
    assert done.stdout == TEXT
    # Without Accept-Encoding: the file as it is, with Vary (gzip_vary) for caches.
    status, headers, plain = fetch(base + "/big.txt")
    assert plain == TEXT and headers["content-length"] == str(len(TEXT))
    assert headers["vary"] == "Accept-Encoding" and "content-encoding" not in headers


def test_no_gzip_for_ranges_small_bodies_or_other_types(edge: tuple[EdgeProcess, str, str]) -> None:
    _process, base, _ = edge
    status, headers, body = fetch(
        base + "/big.txt", "-H", "Accept-Encoding: gzip", "-H", "Range: bytes=0-99"
    )
    assert status == 206 and body == TEXT[:100] and "content-encoding" not in headers
    status, headers, body = fetch(base + "/small.txt", "-H", "Accept-Encoding: gzip")
    assert status == 200 and body == b"tiny\n" and "content-encoding" not in headers
    status, headers, body = fetch(base + "/errors/404.html", "-H", "Accept-Encoding: gzip")
    assert "content-encoding" not in headers  # that location has no gzip


def test_proxied_responses_stream_compressed_and_gzip_proxied_applies(
    edge: tuple[EdgeProcess, str, str],
) -> None:
    _process, base, _ = edge
    status, headers, raw = fetch(base + "/app/big.txt", "-H", "Accept-Encoding: gzip")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["transfer-encoding"] == "chunked"
    assert gzip.decompress(raw) == TEXT and len(raw) < len(TEXT) // 5
    via = ("-H", "Accept-Encoding: gzip", "-H", "Via: 1.1 cdn")
    status, headers, body = fetch(base + "/app/big.txt", *via)
    assert body == TEXT and "content-encoding" not in headers  # a proxy's request, no auth
    status, headers, raw = fetch(base + "/app/big.txt", *via, "-H", "Authorization: Basic eDp5")
    assert headers["content-encoding"] == "gzip" and gzip.decompress(raw) == TEXT


def test_error_page_internal_redirects_rewrites_and_redirects(
    edge: tuple[EdgeProcess, str, str],
) -> None:
    process, base, _ = edge
    status, headers, body = fetch(base + "/nothing-here")
    assert (status, body) == (404, b"<h1>custom not found</h1>\n")
    # The page's own location (/errors/, the server's add_header) decides, and not on a 404.
    assert "x-frame-options" not in headers and "x-always" not in headers
    assert "x-server-wide" not in headers
    status, headers, body = fetch(base + "/forbidden?x=1")
    assert (status, body) == (200, b"forbidden page for /forbidden?x=1\n")
    status, headers, body = fetch(base + "/moved/here")
    assert status == 301 and headers["location"] == "https://example.test/moved/here"
    status, headers, body = fetch(base + "/down")
    assert (status, body) == (502, b"<h1>custom server error</h1>\n")
    assert "x-server-wide" not in headers
    process.wait_for_log(r"connect\(\) to 127\.0\.0\.1:9 failed")


def test_proxy_intercept_errors(edge: tuple[EdgeProcess, str, str]) -> None:
    _process, base, _ = edge
    status, _, body = fetch(base + "/intercepted/nope")
    assert (status, body) == (404, b"<h1>custom not found</h1>\n")
    status, _, body = fetch(base + "/passed/nope")
    assert status == 404 and b"custom" not in body  # http.server's own page
    status, _, body = fetch(base + "/intercepted/big.txt")
    assert status == 200 and body == TEXT


def test_add_header_on_success_and_return_with_variables(
    edge: tuple[EdgeProcess, str, str],
) -> None:
    _process, base, _ = edge
    status, headers, _ = fetch(base + "/small.txt")
    assert status == 200 and headers["x-frame-options"] == "DENY"
    assert headers["x-always"] == "seen /small.txt"
    assert "x-server-wide" not in headers  # the location's add_header replaces the server's
    status, headers, _ = fetch(base + "/echo?q=42")
    assert status == 302
    assert headers["location"] == "https://127.0.0.1/next?from=/echo&q=42"
    assert headers["x-server-wide"] == "on 127.0.0.1"


def test_strict_transport_security_over_tls(edge: tuple[EdgeProcess, str, str], ca: TestCa) -> None:
    _process, _, secure = edge
    for path, status in (("/", 200), ("/missing", 404)):
        for http in ("--http1.1", "--http2"):
            result = curl(secure + path, ca.certificate, http=http)
            assert result.status == status
            assert result.headers["strict-transport-security"] == (
                "max-age=63072000; includeSubDomains"
            )
