"""HTTP/2 in a real edge process: h2load at 100 streams over 10 connections, curl with
large bodies both ways (flow control), and the attacks, sent with the ``h2`` library's
client over a real TLS socket: rapid reset, an HPACK bomb, a CONTINUATION flood, a
header block that never ends, and a client that never reads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import h2.events
import h2.settings
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, HeadersFrame

from tests.integration.conftest import WSGI_APP
from tests.support.certs import TestCa
from tests.support.edge import EdgeProcess, start_edge, write_config
from tests.support.processes import TCP_ESTABLISHED, appserver, tcp_connections, wait_until
from tests.support.tls_clients import H2Client, curl, wait_tls_ready

H2LOAD = shutil.which("h2load") or "/usr/bin/h2load"

CONFIG = """
error_log: {{level: info}}
servers:
  - listen: "127.0.0.1:0 ssl http2"
    ssl_certificate: {certificate}
    ssl_certificate_key: {key}
    client_header_timeout: 2s
    send_timeout: 2s
    keepalive_requests: 100000
    client_max_body_size: 20m
    locations:
      - path: /
        root: {root}
      - path: = /echo
        proxy: app
      - path: = /environ
        proxy: app
      - path: = /slow
        proxy: app
upstreams:
  app:
    servers: ["{upstream}"]
"""

SMALL = b"small file\n"
MEDIUM = os.urandom(40_000)  # answered from memory, in several DATA frames


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    (root / "small.txt").write_bytes(SMALL)
    (root / "medium.bin").write_bytes(MEDIUM)
    path = root / "big.bin"
    path.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("app")
    server = appserver(
        ["--socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master", "--threads", "8"],
        cwd=directory,
        log_path=directory / "appserver.log",
    )
    try:
        server.wait_ready(1)
        host, port = server.address("uwsgi")
        yield f"{host}:{port}"
    finally:
        server.stop()


def _start(directory: Path, ca: TestCa, root: Path, upstream: str) -> EdgeProcess:
    pair = ca.issue("h2.test", alt_names=("IP:127.0.0.1",))
    text = CONFIG.format(certificate=pair.certificate, key=pair.key, root=root, upstream=upstream)
    config = write_config(directory, text)
    return start_edge(["-c", str(config)], cwd=directory, log_path=directory / "edge.log")


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, ca: TestCa, big: Path, app: str
) -> Iterator[tuple[EdgeProcess, tuple[str, int]]]:
    process = _start(tmp_path_factory.mktemp("edge"), ca, big.parent, app)
    try:
        (address,) = wait_tls_ready(process, ca.certificate)
        yield process, address
        assert "Traceback" not in process.log(), process.log()
    finally:
        process.stop()


def served_again(address: tuple[str, int], ca: TestCa) -> None:
    """After an attack: a new connection is served as usual."""
    client = H2Client.connect(address, ca.certificate)
    try:
        assert client.response(client.request("/small.txt")) == (200, SMALL)
    finally:
        client.close()


def h2load(url: str, *args: str) -> str:
    result = subprocess.run(
        [H2LOAD, *args, url], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_h2load_100_streams_over_10_connections(
    edge: tuple[EdgeProcess, tuple[str, int]],
) -> None:
    _process, (host, port) = edge
    for path, total in (("/small.txt", 3000), ("/echo", 1000)):
        out = h2load(f"https://{host}:{port}{path}", "-n", str(total), "-c", "10", "-m", "100")
        assert f"requests: {total} total, {total} started, {total} done, {total} succeeded, " \
            "0 failed, 0 errored, 0 timeout" in out, out  # fmt: skip
        assert f"status codes: {total} 2xx, 0 3xx, 0 4xx, 0 5xx" in out, out
        assert "Application protocol: h2" in out, out


def test_flow_control_both_ways_with_curl(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa, big: Path
) -> None:
    _process, (host, port) = edge
    data = big.read_bytes()
    download = curl(f"https://{host}:{port}/big.bin", ca.certificate)
    assert (download.status, download.version) == (200, "2")
    assert hashlib.sha256(download.body).hexdigest() == hashlib.sha256(data).hexdigest()
    # 3 MiB up through 64 KiB stream windows: the edge acknowledges as the upstream reads.
    upload = curl(
        f"https://{host}:{port}/echo",
        ca.certificate,
        "--data-binary",
        f"@{big}",
        "-H",
        "Content-Type: application/octet-stream",
    )
    echoed = json.loads(upload.body)
    assert (upload.status, upload.version) == (200, "2")
    assert echoed["size"] == len(data)
    assert echoed["sha256"] == hashlib.sha256(data).hexdigest()
    # A body of unknown length (no content-length: chunked upstream) arrives whole too.
    piped = subprocess.run(
        [
            "curl", "-sS", "--http2", "--cacert", str(ca.certificate), "-T", "-",
            "-X", "POST", f"https://{host}:{port}/echo",
        ],
        input=data[:200_000], capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(piped.stdout)["sha256"] == hashlib.sha256(data[:200_000]).hexdigest()


def test_settings_and_request_mapping(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa
) -> None:
    _process, address = edge
    client = H2Client.connect(address, ca.certificate)
    try:
        event = client.until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        assert isinstance(event, h2.events.RemoteSettingsChanged)
        settings = {code: change.new_value for code, change in event.changed_settings.items()}
        codes = h2.settings.SettingCodes
        assert settings[codes.MAX_CONCURRENT_STREAMS] == 128  # http2_max_concurrent_streams
        assert settings[codes.MAX_HEADER_LIST_SIZE] == 4 * 8192  # large_client_header_buffers
        assert settings[codes.INITIAL_WINDOW_SIZE] == 65536  # http2_body_preread_size
        # Cookie crumbs are joined again, :authority becomes Host (RFC 9113 §8.2.3, §8.3.1).
        stream = client.request(
            "/environ?x=1",
            host="h2.test",
            extra=((b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"x-custom", b"yes")),
        )
        status, body = client.response(stream)
        environ = json.loads(body)
        assert status == 200
        assert environ["HTTP_COOKIE"] == "a=1; b=2"
        assert environ["HTTP_HOST"] == "h2.test"
        assert environ["HTTP_X_CUSTOM"] == "yes"
        assert environ["QUERY_STRING"] == "x=1"
        assert environ["SERVER_PROTOCOL"] == "HTTP/2.0" and environ["HTTPS"] == "on"
    finally:
        client.close()


def test_files_answered_from_memory_arrive_whole(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa
) -> None:
    """Small files are answered without a task, as on HTTP/1; one larger than a frame
    goes out in pieces as the window allows, a HEAD has the length and no body."""
    _process, address = edge
    client = H2Client.connect(address, ca.certificate)
    try:
        for _ in range(3):  # the first lookup, then from memory
            assert client.response(client.request("/medium.bin")) == (200, MEDIUM)
            assert client.response(client.request("/small.txt")) == (200, SMALL)
        head = client.request("/small.txt", method="HEAD")
        response = client.until(
            lambda e: isinstance(e, h2.events.ResponseReceived) and e.stream_id == head
        )
        assert isinstance(response, h2.events.ResponseReceived)
        fields = dict(response.headers or ())
        assert fields[b":status"] == b"200" and fields[b"content-length"] == b"%d" % len(SMALL)
        assert response.stream_ended is not None  # END_STREAM on the HEADERS: no body
    finally:
        client.close()


def test_rapid_reset_ends_the_connection(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa
) -> None:
    """CVE-2023-44487: open a stream, reset it at once, again and again."""
    process, address = edge
    client = H2Client.connect(address, ca.certificate)
    started = time.monotonic()
    try:
        for _batch in range(8):
            if any(isinstance(e, h2.events.ConnectionTerminated) for e in client.events):
                break
            for _ in range(50):
                stream = client.request("/echo", end=True)
                client.conn.reset_stream(stream, ErrorCodes.CANCEL)
            client.flush()
            if client.closed:
                break
            try:
                client.ping()  # each batch arrives in reads of its own
            except AssertionError:
                break  # the GOAWAY came first
        goaway = client.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        assert time.monotonic() - started < 20
    finally:
        client.close()
    process.wait_for_log(r"client reset too many streams \(rapid reset\)")
    served_again(address, ca)


def test_too_many_streams_in_one_read(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa
) -> None:
    process, address = edge
    client = H2Client.connect(address, ca.certificate)
    try:
        for _ in range(400):  # all in one write: 2 x 128 new streams per read is the most
            stream = client.request("/small.txt")
            client.conn.reset_stream(stream, ErrorCodes.CANCEL)
        client.flush()
        goaway = client.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        client.close()
    assert re.search(
        r"client (opened too many streams at once|reset too many streams)", process.log()
    )
    served_again(address, ca)


def _integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1) in the low ``prefix_bits`` of ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out, value = [first | limit], value - limit
    while value >= 128:
        out.append((value % 128) | 0x80)
        value //= 128
    out.append(value)
    return bytes(out)


def _literal(name: bytes, value: bytes, *, indexed: bool = False) -> bytes:
    """A literal header field with a new name, no Huffman (RFC 7541 §6.2)."""
    kind = 0x40 if indexed else 0x00
    return bytes([kind]) + _integer(len(name), 7) + name + _integer(len(value), 7) + value


PSEUDO = b"".join(
    _literal(name, value)
    for name, value in ((b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/"))
)


def _bomb(count: int) -> bytes:
    """One 4000-byte header added to the dynamic table, then referenced ``count`` times
    (one byte each): a block of a few KB that would decode to ``4 KB x count``."""
    return PSEUDO + _literal(b"x-bomb", b"v" * 4000, indexed=True) + bytes([0x80 | 62]) * count


def test_hpack_bomb_is_refused_before_it_inflates(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa
) -> None:
    process, address = edge
    client = H2Client.connect(address, ca.certificate, validate=False)
    client.ping()
    try:
        frame = HeadersFrame(1)
        frame.data = _bomb(10_000)  # would decode to ~40 MB
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        client.send_raw(frame.serialize())
        goaway = client.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        client.close()
    process.wait_for_log(r"client sent invalid HTTP/2 data: Oversized header block")
    served_again(address, ca)


def test_continuation_flood_is_refused(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa
) -> None:
    process, address = edge
    first = HeadersFrame(1)
    first.data = PSEUDO
    frames = [first.serialize()]
    for number in range(200):  # never END_HEADERS
        continuation = ContinuationFrame(1)
        continuation.data = _literal(b"x-flood-%d" % number, b"f" * 8000)
        frames.append(continuation.serialize())
    client = H2Client.connect(address, ca.certificate, validate=False)
    try:
        client.ping()
        try:
            client.send_raw(b"".join(frames))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the edge stopped reading: what we are checking
        goaway = client.goaway()
        assert goaway is not None and goaway.error_code == ErrorCodes.PROTOCOL_ERROR
    finally:
        client.close()
    process.wait_for_log(r"client sent invalid HTTP/2 data: Too many continuation frames")
    served_again(address, ca)


def test_a_header_block_that_never_ends_is_timed_out(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa
) -> None:
    process, address = edge
    client = H2Client.connect(address, ca.certificate, validate=False)
    client.ping()  # the SETTINGS exchange is over: nothing else will be sent
    started = time.monotonic()
    try:
        first = HeadersFrame(1)
        first.data = PSEUDO
        client.send_raw(first.serialize())  # no END_HEADERS, and nothing after it
        client.until(lambda e: False, timeout=10, what="the connection to close")
        assert client.closed
        assert 1.5 < time.monotonic() - started < 8  # client_header_timeout: 2s
    finally:
        client.close()
    process.wait_for_log(r"client timed out before sending a request")


def test_a_stream_that_never_reads_is_reset_after_send_timeout(
    edge: tuple[EdgeProcess, tuple[str, int]], ca: TestCa
) -> None:
    """Window 0 and no WINDOW_UPDATE: the edge holds one window's worth, then gives up."""
    process, address = edge
    codes = h2.settings.SettingCodes
    client = H2Client.connect(address, ca.certificate, settings={codes.INITIAL_WINDOW_SIZE: 0})
    started = time.monotonic()
    try:
        client.ping()  # our SETTINGS are in effect
        stream = client.request("/big.bin")
        response = client.until(lambda e: isinstance(e, h2.events.ResponseReceived))
        assert response is not None
        reset = client.until(
            lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == stream,
            what="RST_STREAM",
        )
        assert isinstance(reset, h2.events.StreamReset)
        assert reset.error_code == ErrorCodes.CANCEL
        assert 1.5 < time.monotonic() - started < 10  # send_timeout: 2s
        assert not any(isinstance(e, h2.events.DataReceived) for e in client.events)
        # The connection itself lives on.
        client.conn.update_settings({codes.INITIAL_WINDOW_SIZE: 65535})
        client.flush()
        assert client.response(client.request("/small.txt")) == (200, SMALL)
    finally:
        client.close()
    process.wait_for_log(r"client timed out while sending response to client \(stream 1\)")


def test_a_graceful_stop_finishes_the_streams_in_flight(
    tmp_path: Path, ca: TestCa, big: Path, app: str
) -> None:
    """SIGQUIT: GOAWAY, the stream in flight is answered whole, then edge exits.  curl is the
    client here: h2's client side treats any GOAWAY as the end of every stream."""
    process = _start(tmp_path, ca, big.parent, app)
    try:
        ((host, port),) = wait_tls_ready(process, ca.certificate)
        app_port = int(app.rpartition(":")[2])
        curl_run = subprocess.Popen(
            [
                "curl", "-sS", "--http2", "--cacert", str(ca.certificate), "-w", "\n%{http_code}",
                f"https://{host}:{port}/slow?1.5",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            # The request is in flight once an edge worker holds a connection to the app.
            wait_until(
                lambda: any(
                    row.remote[1] == app_port and row.state == TCP_ESTABLISHED
                    for pid in process.worker_pids()
                    for row in tcp_connections(pid)
                ),
                timeout=10,
                what="edge to connect to the app",
                process=process,
            )
            process.signal(signal.SIGQUIT)
            out, err = curl_run.communicate(timeout=30)
        finally:
            if curl_run.poll() is None:
                curl_run.kill()
                curl_run.communicate()
        body, _, status = out.rpartition(b"\n")
        assert status == b"200", (out, err)
        assert json.loads(body)["slept"] == "1.5"
        assert process.wait(timeout=20) == 0
        assert "graceful stop" in process.log()
    finally:
        process.stop()
