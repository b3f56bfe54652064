"""edge.protocol through a MockTransport: framing, keep-alive, limits, errors, timeouts.

No sockets: bytes go in through ``data_received`` and come out of the
transport's buffer (uvicorn's approach).  Each test runs its own event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from edge.exchange import EdgeError, Exchange
from edge.handlers import InternalRedirect
from edge.protocol import CLOSED_PHASE, IDLE
from tests.support.edge_protocol import Harness

BASIC = """
servers:
  - listen: 127.0.0.1:8080
    server_name: example.com
    locations:
      - path: /
        return: {status: 200, body: "uri=$uri\\n"}
"""


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def make(tmp_path: Path, yaml_text: str = BASIC) -> Harness:
    return Harness(yaml_text, tmp_path)


async def echo(exchange: Exchange) -> None:
    """Reads the whole body and sends it back."""
    parts = []
    while True:
        data = await exchange.body.read()
        if not data:
            break
        parts.append(data)
    body = b"".join(parts)
    await exchange.response.send_head(200, [(b"Content-Length", str(len(body)).encode())])
    await exchange.response.send(body)
    await exchange.response.end()


GET = b"GET /%s HTTP/1.1\r\nHost: example.com\r\n\r\n"


# --- framing and keep-alive ---------------------------------------------------------------


def test_pipelined_requests_are_answered_in_order_on_one_connection(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path)
        await harness.start()
        client = harness.connect()
        client.send(GET % b"a" + GET % b"b" + GET % b"c")
        bodies = [(await client.response()).body for _ in range(3)]
        assert bodies == [b"uri=/a\n", b"uri=/b\n", b"uri=/c\n"]
        assert not client.transport.closed
        assert client.protocol.phase == IDLE
        assert len(harness.access) == 3

    run(main())


def test_request_split_byte_by_byte_is_served(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path)
        await harness.start()
        client = harness.connect()
        for byte in GET % b"slow":
            client.send(bytes([byte]))
        response = await client.response()
        assert response.body == b"uri=/slow\n"
        assert response.header("Connection") == "keep-alive"
        assert response.header("Server") == "edge"
        assert (
            response.header(
                "Date",
            )
            is not None
        )

    run(main())


def test_http10_closes_unless_keep_alive_is_asked(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path)
        await harness.start()
        client = harness.connect()
        client.send(b"GET /x HTTP/1.0\r\n\r\n")
        response = await client.response()
        assert response.status == 200 and response.header("Connection") == "close"
        await client.settle()
        assert client.transport.closed
        client = harness.connect()
        client.send(b"GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        response = await client.response()
        assert response.header("Connection") == "keep-alive"
        assert not client.transport.closed

    run(main())


def test_keepalive_requests_closes_after_the_last_allowed(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(
            tmp_path, BASIC.replace("server_name:", "keepalive_requests: 2\n    server_name:")
        )
        await harness.start()
        client = harness.connect()
        client.send(GET % b"1" + GET % b"2")
        assert (await client.response()).header("Connection") == "keep-alive"
        assert (await client.response()).header("Connection") == "close"
        await client.settle()
        assert client.transport.closed

    run(main())


def test_head_response_has_headers_but_no_body(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path)
        await harness.start()
        client = harness.connect()
        client.send(b"HEAD /h HTTP/1.1\r\nHost: example.com\r\n\r\n" + GET % b"after")
        await asyncio.sleep(0.05)
        data = bytes(client.transport.buffer)
        head_end = data.find(b"\r\n\r\n") + 4
        assert b"Content-Length: 7" in data[:head_end]
        assert data[head_end:].startswith(b"HTTP/1.1 200 OK")  # no body bytes in between

    run(main())


def test_handler_without_length_is_chunked_for_11_and_close_delimited_for_10(
    tmp_path: Path,
) -> None:
    async def stream(exchange: Exchange) -> None:
        await exchange.response.send_head(200, [(b"Content-Type", b"text/plain")])
        await exchange.response.send(b"hello ")
        await exchange.response.send(b"world")
        await exchange.response.end()

    async def main() -> None:
        harness = make(tmp_path)
        harness.use_handler(stream)
        client = harness.connect()
        client.send(GET % b"s")
        response = await client.response()
        assert response.header("Transfer-Encoding") == "chunked"
        assert response.body == b"hello world"
        assert b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n" in client.transport.buffer
        client = harness.connect()
        client.send(b"GET /s HTTP/1.0\r\n\r\n")
        await asyncio.sleep(0.05)
        data = bytes(client.transport.buffer)
        assert b"Transfer-Encoding" not in data and data.endswith(b"\r\n\r\nhello world")
        assert b"Connection: close" in data and client.transport.closed

    run(main())


# --- request bodies -----------------------------------------------------------------------


def test_expect_100_continue_is_sent_when_the_body_is_read(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path)
        harness.use_handler(echo)
        client = harness.connect()
        client.send(
            b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        await client.settle()
        assert bytes(client.transport.buffer) == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.send(b"hello")
        interim = await client.response()
        final = await client.response()
        assert interim.status == 100
        assert final.status == 200 and final.body == b"hello"

    run(main())


def test_chunked_body_is_dechunked_and_keep_alive_continues(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path)
        harness.use_handler(echo)
        client = harness.connect()
        client.send(
            b"POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n" + GET % b"next"
        )
        assert (await client.response()).body == b"abcdefg"
        assert (await client.response()).status == 200

    run(main())


def test_read_all_spools_past_the_limit_and_the_file_is_removed(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def spool(exchange: Exchange) -> None:
        length, body = await exchange.body.read_all(spool_limit=100)
        assert isinstance(body, os.PathLike)
        seen["path"] = os.fspath(body)
        seen["content"] = Path(body).read_bytes()
        seen["length"] = length
        await exchange.response.send_head(204, [])
        await exchange.response.end()

    async def main() -> None:
        harness = make(tmp_path)
        harness.use_handler(spool)
        client = harness.connect()
        payload = bytes(range(256)) * 4
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(payload[i : i + 100]), payload[i : i + 100])
            for i in range(0, len(payload), 100)
        )
        client.send(
            b"POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunks
            + b"0\r\n\r\n"
        )
        assert (await client.response()).status == 204
        assert seen["content"] == payload and seen["length"] == len(payload)
        await client.settle()
        assert not os.path.exists(seen["path"])

    run(main())


def test_reading_pauses_above_the_high_water_mark_and_resumes_when_read(tmp_path: Path) -> None:
    gate = asyncio.Event

    async def main() -> None:
        release = gate()

        async def slow(exchange: Exchange) -> None:
            await release.wait()
            await echo(exchange)

        harness = make(
            tmp_path, BASIC.replace("server_name:", "client_max_body_size: 10m\n    server_name:")
        )
        harness.use_handler(slow)
        client = harness.connect()
        body = b"x" * 300_000
        client.send(
            b"POST /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for i in range(0, len(body), 50_000):
            client.send(body[i : i + 50_000])
        await client.settle()
        assert not client.transport.reading
        release.set()
        response = await client.response()
        assert response.body == body
        assert client.transport.reading

    run(main())


def test_body_over_client_max_body_size_is_413_and_closes(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(
            tmp_path, BASIC.replace("server_name:", "client_max_body_size: 10\n    server_name:")
        )
        harness.use_handler(echo)
        client = harness.connect()
        client.send(b"POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\n")
        response = await client.response()
        assert response.status == 413 and response.header("Connection") == "close"
        assert client.transport.eof_written  # lingering close: the unread body is drained
        client = harness.connect()
        client.send(
            b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n"
        )
        assert (await client.response()).status == 413
        assert any("too large body: 11 bytes" in line for line in harness.errors)

    run(main())


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /a/../../b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /a%00b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
def test_refused_requests_get_their_status_and_the_connection_closes(
    tmp_path: Path, raw: bytes, status: int
) -> None:
    async def main() -> None:
        harness = make(tmp_path)
        await harness.start()
        client = harness.connect()
        client.send(raw)
        response = await client.response()
        assert response.status == status
        assert response.header("Connection") == "close"
        assert client.transport.eof_written or client.transport.closed
        client.eof()
        await client.settle()
        assert client.transport.closed
        assert harness.access[-1].split('"')[2].split()[0] == str(status)

    run(main())


def test_edge_error_gives_its_status_and_an_nginx_style_error_line(tmp_path: Path) -> None:
    async def fail(exchange: Exchange) -> None:
        raise EdgeError("backend said no", status=503, level="error")

    async def main() -> None:
        harness = make(tmp_path)
        harness.use_handler(fail)
        client = harness.connect(("10.1.2.3", 4444))
        client.send(b"GET /x?y=1 HTTP/1.1\r\nHost: Example.com:8080\r\n\r\n")
        response = await client.response()
        assert response.status == 503 and b"503 Service Unavailable" in response.body
        line = harness.errors[-1]
        assert re.fullmatch(
            r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#0: \*1 backend said no, "
            r'client: 10\.1\.2\.3, server: example\.com, request: "GET /x\?y=1 HTTP/1\.1", '
            r'host: "Example\.com:8080"',
            line,
        ), line

    run(main())


def test_unexpected_exception_is_500_with_a_traceback_and_the_worker_serves_on(
    tmp_path: Path,
) -> None:
    async def crash(exchange: Exchange) -> None:
        if exchange.request.path == "/crash":
            raise ValueError("bug in handler")
        await echo(exchange)

    async def main() -> None:
        harness = make(tmp_path)
        harness.use_handler(crash)
        client = harness.connect()
        client.send(GET % b"crash")
        response = await client.response()
        assert response.status == 500 and response.header("Connection") == "close"
        text = "\n".join(harness.errors)
        assert "[error]" in text and "Traceback (most recent call last)" in text
        assert "ValueError: bug in handler" in text
        client = harness.connect()
        client.send(GET % b"fine")
        assert (await client.response()).status == 200

    run(main())


def test_failure_after_the_head_cuts_the_connection(tmp_path: Path) -> None:
    async def half(exchange: Exchange) -> None:
        await exchange.response.send_head(200, [(b"Content-Length", b"100")])
        await exchange.response.send(b"partial")
        raise EdgeError("upstream died mid-body", status=502)

    async def main() -> None:
        harness = make(tmp_path)
        harness.use_handler(half)
        client = harness.connect()
        client.send(GET % b"x" + GET % b"never")
        await client.settle()
        await asyncio.sleep(0.02)
        assert client.transport.closed
        assert bytes(client.transport.buffer).count(b"HTTP/1.1") == 1
        assert '" 200 7 ' in harness.access[-1]

    run(main())


def test_client_disconnect_cancels_the_handler_and_logs_499(tmp_path: Path) -> None:
    cancelled = asyncio.Event

    async def main() -> None:
        was_cancelled = cancelled()

        async def hang(exchange: Exchange) -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                was_cancelled.set()
                raise

        harness = make(tmp_path)
        harness.use_handler(hang)
        client = harness.connect()
        client.send(GET % b"hang")
        await client.settle()
        client.disconnect()
        await asyncio.wait_for(was_cancelled.wait(), 1)
        await client.settle()
        assert '" 499 0 ' in harness.access[-1]
        assert not harness.state.connections

    run(main())


def test_internal_redirect_cycle_is_a_500(tmp_path: Path) -> None:
    async def loop_forever(exchange: Exchange) -> None:
        raise InternalRedirect("/again")

    async def main() -> None:
        harness = make(tmp_path)
        harness.use_handler(loop_forever)
        client = harness.connect()
        client.send(GET % b"start")
        assert (await client.response()).status == 500
        assert any("internal redirection cycle" in line for line in harness.errors)

    run(main())


def test_return_444_closes_without_a_response(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path, BASIC.replace('{status: 200, body: "uri=$uri\\n"}', "444"))
        await harness.start()
        client = harness.connect()
        client.send(GET % b"x")
        await client.settle()
        await asyncio.sleep(0.02)
        assert client.transport.closed and not client.transport.buffer
        assert '" 444 0 ' in harness.access[-1]

    run(main())


# --- protection ----------------------------------------------------------------------------


PROTECTED = """
limit_req_zones:
  fast: {rate: 10r/s}
  strict: {rate: 1r/m}
limit_conn_zones:
  one: {}
real_ip:
  trusted: [10.0.0.0/8]
  header: X-Forwarded-For
servers:
  - listen: 127.0.0.1:8080
    locations:
      - path: /delay
        return: {status: 200, body: "ok"}
        limit_req: {zone: fast, burst: 5}
      - path: /strict
        return: {status: 200, body: "ok"}
        limit_req: {zone: strict, burst: 0, nodelay: true, status: 429}
      - path: /conn
        return: {status: 200, body: "ok"}
        limit_conn: {zone: one, max: 1}
      - path: /admin
        return: {status: 200, body: "admin"}
        access: [allow 192.0.2.0/24, deny all]
"""


def test_limit_req_rejects_with_the_configured_status(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path, PROTECTED)
        await harness.start()
        client = harness.connect()
        client.send(b"GET /strict HTTP/1.1\r\nHost: a\r\n\r\n" * 2)
        assert (await client.response()).status == 200
        assert (await client.response()).status == 429
        assert any(
            'limiting requests, excess: 1.000 by zone "strict"' in line for line in harness.errors
        )
        other = harness.connect(("127.0.0.2", 1))  # another client has its own bucket
        other.send(b"GET /strict HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await other.response()).status == 200

    run(main())


def test_limit_req_without_nodelay_delays_the_burst(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path, PROTECTED)
        await harness.start()
        loop = asyncio.get_running_loop()
        client = harness.connect()
        started = loop.time()
        client.send(b"GET /delay HTTP/1.1\r\nHost: a\r\n\r\n" * 3)
        for _ in range(3):
            assert (await client.response()).status == 200
        # 10r/s: the 2nd and 3rd requests wait about 100 ms and 200 ms.
        assert 0.15 <= loop.time() - started < 1.0

    run(main())


def test_limit_conn_refuses_a_second_request_in_progress(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path, PROTECTED)
        await harness.start()
        first = harness.connect()
        # The body is discarded before the return handler runs: it holds the slot.
        first.send(b"POST /conn HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        await first.settle()
        second = harness.connect()
        second.send(b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await second.response()).status == 503
        first.send(b"cd")
        assert (await first.response()).status == 200
        third = harness.connect()
        third.send(b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await third.response()).status == 200

    run(main())


def test_access_rules_use_the_real_ip_from_trusted_proxies(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path, PROTECTED)
        await harness.start()
        direct = harness.connect(("192.0.2.9", 1))
        direct.send(b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await direct.response()).status == 200
        proxied = harness.connect(("10.0.0.1", 1))
        proxied.send(b"GET /admin HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n")
        assert (await proxied.response()).status == 403
        assert harness.access[-1].startswith("203.0.113.5 - - [")
        assert any(
            "access forbidden by rule, client: 203.0.113.5" in line for line in harness.errors
        )
        spoofed = harness.connect(("203.0.113.5", 1))  # untrusted peers cannot choose their IP
        spoofed.send(b"GET /admin HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n")
        assert (await spoofed.response()).status == 403

    run(main())


# --- timeouts and connection limits ---------------------------------------------------------


TIMEOUTS = """
worker_connections: 3
servers:
  - listen: 127.0.0.1:8080
    client_header_timeout: 100ms
    keepalive_timeout: 100ms
    send_timeout: 100ms
    client_body_timeout: 100ms
    locations:
      - path: /
        return: {status: 200, body: "ok"}
"""


@pytest.mark.parametrize(
    ("header_ms", "keepalive_ms", "open_at", "closed_at"),
    [
        (1200, 300, 0.15, 0.7),  # the shorter deadline after a longer one fires on time
        (300, 1200, 0.7, 1.6),  # the longer one after a shorter one does not fire early
    ],
)
def test_each_wait_gets_its_own_deadline(
    tmp_path: Path, header_ms: int, keepalive_ms: int, open_at: float, closed_at: float
) -> None:
    """One timer per connection is moved lazily; each wait still gets its own deadline.

    The checks sit far from both deadlines (0.3 s or more), so a slow machine does
    not decide them.
    """
    config = f"""
servers:
  - listen: 127.0.0.1:8080
    client_header_timeout: {header_ms}ms
    keepalive_timeout: {keepalive_ms}ms
    locations:
      - path: /
        return: {{status: 200, body: "ok"}}
"""

    async def main() -> None:
        harness = make(tmp_path, config)
        await harness.start()
        kept = harness.connect()
        kept.send(GET % b"")
        assert (await kept.response()).status == 200
        answered = asyncio.get_running_loop().time()
        await asyncio.sleep(open_at)
        assert not kept.transport.closed
        await asyncio.sleep(max(0.0, answered + closed_at - asyncio.get_running_loop().time()))
        assert kept.transport.closed

    run(main())


def test_slow_head_gets_408_and_idle_connections_close_silently(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path, TIMEOUTS)
        await harness.start()
        slow = harness.connect()
        slow.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        idle = harness.connect()
        kept = harness.connect()
        kept.send(GET % b"")
        assert (await kept.response()).status == 200
        offset = len(kept.transport.buffer)
        await asyncio.sleep(0.25)
        assert (await slow.response()).status == 408
        assert idle.transport.closed and not idle.transport.buffer
        assert kept.transport.closed and len(kept.transport.buffer) == offset

    run(main())


def test_body_timeout_is_408_and_closes(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path, TIMEOUTS)
        harness.use_handler(echo)
        client = harness.connect()
        client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        response = await client.response(timeout=1)
        assert response.status == 408 and response.header("Connection") == "close"

    run(main())


def test_send_timeout_aborts_a_client_that_stops_reading(tmp_path: Path) -> None:
    async def big(exchange: Exchange) -> None:
        await exchange.response.send_head(200, [(b"Content-Length", b"20")])
        exchange.response._conn.pause_writing()  # type: ignore[attr-defined]  # the socket is full
        await exchange.response.send(b"x" * 10)
        await exchange.response.send(b"x" * 10)
        await exchange.response.end()

    async def main() -> None:
        harness = make(tmp_path, TIMEOUTS)
        harness.use_handler(big)
        client = harness.connect()
        client.send(GET % b"")
        await asyncio.sleep(0.3)
        assert client.transport.aborted
        assert any("client timed out while sending response" in line for line in harness.errors)

    run(main())


def test_worker_connections_reclaims_idle_connections_first(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path, TIMEOUTS)
        await harness.start()
        oldest_idle = harness.connect()
        slow_head = harness.connect()
        slow_head.send(b"GET / HT")
        newer_idle = harness.connect()
        fresh = harness.connect()  # the 4th: over worker_connections 3
        await fresh.settle()
        assert oldest_idle.transport.aborted
        assert not slow_head.transport.closed and not newer_idle.transport.closed
        fresh.send(GET % b"")
        assert (await fresh.response()).status == 200
        assert any("worker_connections are not enough" in line for line in harness.errors)

    run(main())


def test_graceful_shutdown_closes_idle_and_finishes_busy_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edge.protocol.FIRST_REQUEST_GRACE", 0.05)

    async def main() -> None:
        release = asyncio.Event()

        async def wait(exchange: Exchange) -> None:
            if exchange.request.path == "/busy":
                await release.wait()
            await echo(exchange)

        harness = make(tmp_path)
        harness.use_handler(wait)
        kept_alive = harness.connect()
        kept_alive.send(GET % b"first")
        await kept_alive.response()
        fresh_silent = harness.connect()
        fresh_talking = harness.connect()
        busy = harness.connect()
        busy.send(GET % b"busy")
        await busy.settle()
        harness.state.stopping = True
        for conn in list(harness.state.connections):
            conn.shutdown()
        await busy.settle()
        # Idle connections, fresh or kept alive, get a short grace for a request in flight.
        assert not kept_alive.transport.closed
        assert not fresh_silent.transport.closed and not busy.transport.closed
        fresh_talking.send(GET % b"late")
        late = await fresh_talking.response()
        assert late.status == 200 and late.header("Connection") == "close"
        kept_alive.send(GET % b"next")
        following = await kept_alive.response()
        assert following.status == 200 and following.header("Connection") == "close"
        await asyncio.sleep(0.1)
        assert fresh_silent.transport.closed and not fresh_silent.transport.buffer
        assert kept_alive.transport.closed
        release.set()
        response = await busy.response()
        assert response.status == 200 and response.header("Connection") == "close"
        await busy.settle()
        assert busy.transport.closed and busy.protocol.phase == CLOSED_PHASE
        assert not harness.state.connections

    run(main())


def test_access_log_line_is_nginx_combined(tmp_path: Path) -> None:
    async def main() -> None:
        harness = make(tmp_path)
        await harness.start()
        client = harness.connect(("192.0.2.7", 5555))
        client.send(
            b'GET /p?q="1" HTTP/1.1\r\nHost: example.com\r\nReferer: http://r/\r\n'
            b"User-Agent: test/1.0\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n"
        )
        await client.response()
        line = harness.access[-1]
        assert re.fullmatch(
            r"192\.0\.2\.7 - alice \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
            r'"GET /p\?q=\\x221\\x22 HTTP/1\.1" 200 7 "http://r/" "test/1\.0"',
            line,
        ), line

    run(main())
