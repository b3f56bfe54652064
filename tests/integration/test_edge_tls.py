"""TLS termination in a real edge process, checked with real clients: curl (HTTP/2 and
HTTP/1.1), ``openssl s_client`` (protocol versions, ALPN, SNI, resumption), and the
backends behind it (what ``$scheme`` and the uwsgi ``HTTPS`` variable say)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import WSGI_APP
from tests.support.certs import Pair, TestCa
from tests.support.edge import EdgeProcess, closed_by_peer, request, start_edge, write_config
from tests.support.tls_clients import curl, s_client, wait_tls_ready

CONFIG = """
error_log: {{level: info}}
worker_processes: 2
servers:
  - listen: "127.0.0.1:0 ssl http2"
    server_name: [a.test]
    ssl_certificate: {a.certificate}
    ssl_certificate_key: {a.key}
    client_header_timeout: 1s
    locations:
      - path: /
        return: {{status: 200, body: "a $scheme $https $server_protocol\\n"}}
      - path: = /environ
        proxy: app
  - listen: "127.0.0.1:0 ssl http2"
    server_name: [b.test]
    ssl_certificate: {b.certificate}
    ssl_certificate_key: {b.key}
    locations:
      - path: /
        return: {{status: 200, body: "b\\n"}}
  # TLS without HTTP/2, TLS 1.3 only
  - listen: {{address: "127.0.0.2:0", ssl: true}}
    ssl_certificate: {a.certificate}
    ssl_certificate_key: {a.key}
    ssl_protocols: [TLSv1.3]
    locations:
      - path: /
        return: {{status: 200, body: "h1 only\\n"}}
  - listen: 127.0.0.3:0
    locations:
      - path: /
        return: {{status: 301, location: "https://$host$request_uri"}}
      - path: = /environ
        proxy: app
upstreams:
  app:
    servers: ["{upstream}"]
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def certs(ca: TestCa) -> dict[str, Pair]:
    return {
        "a": ca.issue("a.test", alt_names=("IP:127.0.0.1", "IP:127.0.0.2")),
        "b": ca.issue("b.test"),
    }


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The validated WSGI test app behind uwsgi (appserver), for the scheme variables."""
    from tests.support.processes import appserver

    directory = tmp_path_factory.mktemp("app")
    server = appserver(
        ["--socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master"],
        cwd=directory,
        log_path=directory / "appserver.log",
    )
    try:
        server.wait_ready(1)
        host, port = server.address("uwsgi")
        yield f"{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, certs: dict[str, Pair], app: str, ca: TestCa
) -> Iterator[tuple[EdgeProcess, list[tuple[str, int]]]]:
    directory = tmp_path_factory.mktemp("edge")
    config = write_config(directory, CONFIG.format(a=certs["a"], b=certs["b"], upstream=app))
    process = start_edge(["-c", str(config)], cwd=directory, log_path=directory / "edge.log")
    try:
        addresses = wait_tls_ready(process, ca.certificate, 3)
        yield process, addresses
    finally:
        process.stop()


def url(address: tuple[str, int], path: str = "/") -> str:
    return f"https://{address[0]}:{address[1]}{path}"


def test_curl_speaks_http2_and_http11_over_tls(
    edge: tuple[EdgeProcess, list[tuple[str, int]]], ca: TestCa
) -> None:
    process, (secure, h1_only, _plain) = edge
    two = curl(url(secure), ca.certificate, http="--http2")
    assert (two.status, two.version, two.body) == (200, "2", b"a https on HTTP/2.0\n")
    assert two.headers["server"] == "edge" and "date" in two.headers
    one = curl(url(secure), ca.certificate, http="--http1.1")
    assert (one.status, one.version, one.body) == (200, "1.1", b"a https on HTTP/1.1\n")
    # A listen without http2 answers HTTP/1.1 to a client that offers h2.
    fallback = curl(url(h1_only), ca.certificate, http="--http2")
    assert (fallback.version, fallback.body) == ("1.1", b"h1 only\n")
    log = process.log()
    assert '"GET / HTTP/2.0" 200' in log and '"GET / HTTP/1.1" 200' in log


def test_s_client_sees_the_protocols_alpn_and_certificate_sni_chose(
    edge: tuple[EdgeProcess, list[tuple[str, int]]], ca: TestCa
) -> None:
    _process, (secure, h1_only, _plain) = edge
    for version in ("-tls1_2", "-tls1_3"):
        out = s_client(secure, version, "-CAfile", str(ca.certificate), "-servername", "a.test")
        assert f"New, TLSv1.{version[-1]}, Cipher is" in out, out
        assert "Verify return code: 0 (ok)" in out, out
    # TLS 1.0 and 1.1 are refused even to a client willing to use them.
    for version in ("-tls1", "-tls1_1"):
        out = s_client(secure, version, "-cipher", "DEFAULT@SECLEVEL=0")
        assert "Cipher is (NONE)" in out, out
    out = s_client(h1_only, "-tls1_2")
    assert "Cipher is (NONE)" in out, out  # this listen is TLS 1.3 only
    # TLS 1.2 ciphers: ECDHE and AEAD only.
    out = s_client(secure, "-tls1_2", "-cipher", "AES128-SHA:ECDHE-RSA-AES128-SHA")
    assert "Cipher is (NONE)" in out, out
    # ALPN: h2 where http2 is on, http/1.1 where it is not.
    assert "ALPN protocol: h2" in s_client(secure, "-alpn", "h2,http/1.1")
    assert "ALPN protocol: http/1.1" in s_client(h1_only, "-alpn", "h2,http/1.1")
    # SNI picks the server block's certificate; no name or an unknown one gets the default.
    assert "subject=CN = b.test" in s_client(secure, "-servername", "b.test")
    assert "subject=CN = a.test" in s_client(secure, "-servername", "a.test")
    assert "subject=CN = a.test" in s_client(secure, "-servername", "other.test")
    assert "subject=CN = a.test" in s_client(secure, "-noservername")
    b = curl(
        f"https://b.test:{secure[1]}/", ca.certificate, resolve=f"b.test:{secure[1]}:127.0.0.1"
    )
    assert b.body == b"b\n"


def test_sessions_resume_across_workers(
    edge: tuple[EdgeProcess, list[tuple[str, int]]], ca: TestCa, tmp_path: Path
) -> None:
    """Two workers share the master's contexts, so a ticket from one is good at the other."""
    _process, (secure, _h1, _plain) = edge
    get = b"GET / HTTP/1.0\r\n\r\n"
    for version in ("-tls1_2", "-tls1_3"):
        session = tmp_path / f"session{version}"
        first = s_client(secure, version, "-sess_out", str(session), "-ign_eof", send=get)
        assert "New, TLSv1." in first, first
        for _ in range(6):  # the kernel spreads these over both workers
            again = s_client(secure, version, "-sess_in", str(session), "-ign_eof", send=get)
            assert "Reused, TLSv1." in again, again


def test_a_handshake_that_never_completes_is_cut_by_client_header_timeout(
    edge: tuple[EdgeProcess, list[tuple[str, int]]],
) -> None:
    _process, (secure, _h1, _plain) = edge
    started = time.monotonic()
    with socket.create_connection(secure, timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and no more
        assert closed_by_peer(sock, timeout=8)
    assert 0.8 < time.monotonic() - started < 6  # client_header_timeout: 1s


def test_scheme_reaches_the_upstream(
    edge: tuple[EdgeProcess, list[tuple[str, int]]], ca: TestCa
) -> None:
    _process, (secure, _h1, plain) = edge
    for http in ("--http2", "--http1.1"):
        environ = json.loads(curl(url(secure, "/environ"), ca.certificate, http=http).body)
        assert environ["HTTPS"] == "on" and environ["REQUEST_SCHEME"] == "https"
        assert environ["wsgi.url_scheme"] == "https"
        assert environ["SERVER_PROTOCOL"] == ("HTTP/2.0" if http == "--http2" else "HTTP/1.1")
    response = request(plain, "GET", "/environ")
    environ = json.loads(response.body)
    assert "HTTPS" not in environ and environ["REQUEST_SCHEME"] == "http"
    assert environ["wsgi.url_scheme"] == "http"


def test_http_redirects_to_https_with_one_return(
    edge: tuple[EdgeProcess, list[tuple[str, int]]],
) -> None:
    _process, (_secure, _h1, plain) = edge
    response = request(plain, "GET", "/some/page?x=1", host="example.test:8080")
    assert response.status == 301
    assert response.header("Location") == "https://example.test/some/page?x=1"


def test_sighup_reads_the_certificates_again(ca: TestCa, tmp_path: Path) -> None:
    first = ca.issue("first.test", alt_names=("IP:127.0.0.1",))
    second = ca.issue("second.test", alt_names=("IP:127.0.0.1",))
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(first.certificate, live / "site.crt")
    shutil.copy(first.key, live / "site.key")
    config = write_config(
        tmp_path,
        'servers:\n  - listen: "127.0.0.1:0 ssl"\n'
        "    ssl_certificate: live/site.crt\n    ssl_certificate_key: live/site.key\n"
        "    locations: [{path: /, return: 204}]\n",
    )
    process = start_edge(["-c", str(config)], cwd=tmp_path, log_path=tmp_path / "edge.log")
    try:
        (address,) = wait_tls_ready(process, ca.certificate)
        assert "subject=CN = first.test" in s_client(address)
        shutil.copy(second.certificate, live / "site.crt")
        shutil.copy(second.key, live / "site.key")
        process.signal(signal.SIGHUP)
        process.wait_for_log(r"reload complete")
        assert "subject=CN = second.test" in s_client(address)
        # A broken pair is refused with the file named; the running one keeps serving.
        shutil.copy(first.key, live / "site.key")
        process.signal(signal.SIGHUP)
        match = process.wait_for_log(r"site\.key: does not match the certificate in \S+site\.crt")
        assert match is not None
        process.wait_for_log(r"reload refused")
        assert "subject=CN = second.test" in s_client(address)
    finally:
        process.stop()
