"""ProxyHandlerImpl against fake peers (in-process asyncio servers on loopback).

Each fake peer is a few lines of asyncio that misbehaves on cue: refuses,
hangs, closes early, answers 502, drops a kept-alive connection.  The
handler is driven through a fake Exchange; assertions are on what the client
would get and on the error-log lines.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest

from edge.config.schema import CacheSettings, ProxyParam
from edge.exchange import ClientError, ClientGone, ResponseAborted, UpstreamError, UpstreamTimeout
from edge.variables import compile_template, expand
from httpproto import NEED_DATA, Data, EndOfMessage, RequestHead, RequestParser
from tests.support.fake_exchange import (
    FakeSink,
    ProxiedLocation,
    make_exchange,
    proxy_config,
    proxy_location,
    upstream,
)
from uwsgiproto import decode_vars

Serve = Callable[["FakePeer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coroutine, 20)

    asyncio.run(bounded())


class FakePeer:
    """A loopback server whose behaviour is one coroutine per connection."""

    def __init__(self, serve: Serve) -> None:
        self.serve = serve
        self.connections = 0
        self.requests: list[Any] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.finished = asyncio.Event()

    async def __aenter__(self) -> FakePeer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.serve(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def refused_address() -> str:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def read_uwsgi(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
    header = await reader.readexactly(4)
    block = await reader.readexactly(int.from_bytes(header[1:3], "little"))
    variables = decode_vars(block)
    body = await reader.readexactly(int(variables.get("CONTENT_LENGTH") or 0))
    return variables, body


async def read_http(
    reader: asyncio.StreamReader, parser: RequestParser
) -> tuple[RequestHead, bytes] | None:
    head: RequestHead | None = None
    body: list[bytes] = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            data = await reader.read(65536)
            parser.feed(data)
            if not data and head is None:
                return None
            continue
        if isinstance(event, RequestHead):
            head = event
        elif isinstance(event, Data):
            body.append(event.data)
        elif isinstance(event, EndOfMessage):
            assert head is not None
            return head, b"".join(body)
        else:
            return None


def ok_response(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def uwsgi_ok(
    peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    variables, body = await read_uwsgi(reader)
    peer.requests.append((variables, body))
    writer.write(ok_response(json.dumps({"port": peer.port, "size": len(body)}).encode()))
    await writer.drain()


async def http_keepalive(
    peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    parser = RequestParser()
    while True:
        request = await read_http(reader, parser)
        if request is None:
            return
        peer.requests.append(request)
        writer.write(ok_response(b"port %d" % peer.port))
        await writer.drain()


# --- variables and request building ---------------------------------------------------


def test_templates_and_variables() -> None:
    config = proxy_config(proxy_location(), upstream("app", "127.0.0.1:1"))
    exchange = make_exchange(
        config,
        "GET",
        "/p%20q?a=1&B=two",
        [
            (b"cookie", b"x=1; sid=abc"),
            (b"x-forwarded-for", b"10.0.0.1"),
            (b"x-multi", b"a"),
            (b"x-multi", b"b"),
        ],
        client_ip="192.0.2.7",
    )
    request = exchange.request

    def get(name: str) -> bytes:
        return expand(compile_template("$" + name), request)

    assert expand(compile_template("$scheme://${host}/$uri?$args"), request) == (
        b"http://localhost//p q?a=1&B=two"
    )
    assert get("cookie_sid") == b"abc"
    assert get("arg_b") == b"two"
    assert get("http_x_multi") == b"a, b"
    assert get("proxy_add_x_forwarded_for") == b"10.0.0.1, 192.0.2.7"
    assert get("request_uri") == b"/p%20q?a=1&B=two"
    assert get("content_length") == b""
    assert get("https") == b""


@pytest.mark.parametrize("keepalive", [0, 32])
def test_uwsgi_request_carries_exactly_the_nginx_vars(keepalive: int) -> None:
    """nginx's vars; with upstream keep-alive also the one var that offers it."""

    async def scenario() -> None:
        async with FakePeer(uwsgi_ok) as peer:
            location = proxy_location(
                params=(
                    ProxyParam("HTTP_X_FORWARDED_PROTO", "$scheme"),
                    ProxyParam("UWSGI_SCHEME", "$https", if_not_empty=True),
                )
            )
            async with ProxiedLocation(location, peer.address, keepalive=keepalive) as setup:
                sink = await setup.request(
                    "POST",
                    "/caf%C3%A9/x?q=1",
                    headers=[
                        (b"content-type", b"text/plain"),
                        (b"cookie", b"a=1"),
                        (b"cookie", b"b=2"),
                        (b"x-forwarded-proto", b"spoofed"),
                        (b"x_underscored", b"dropped"),
                    ],
                    body=b"hello",
                )
        assert sink.status == 200 and sink.ended
        variables, body = peer.requests[0]
        assert body == b"hello"
        offer = {"WSGISTACK_KEEPALIVE": "1"} if keepalive else {}
        assert variables == offer | {
            "QUERY_STRING": "q=1",
            "REQUEST_METHOD": "POST",
            "CONTENT_TYPE": "text/plain",
            "CONTENT_LENGTH": "5",
            "REQUEST_URI": "/caf%C3%A9/x?q=1",
            "PATH_INFO": "/café/x".encode().decode("latin-1"),
            "DOCUMENT_ROOT": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_SCHEME": "http",
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_PORT": "50000",
            "SERVER_PORT": "8000",
            "SERVER_NAME": "localhost",
            "HTTP_X_FORWARDED_PROTO": "http",
            "HTTP_HOST": "localhost",
            "HTTP_COOKIE": "a=1; b=2",
        }

    run(scenario())


def test_chunked_body_reaches_uwsgi_with_a_content_length() -> None:
    async def scenario() -> None:
        async with (
            FakePeer(uwsgi_ok) as peer,
            ProxiedLocation(proxy_location(), peer.address) as setup,
        ):
            sink = await setup.request("POST", "/", body=b"x" * 100_000, chunked=True)
        assert json.loads(sink.body)["size"] == 100_000
        variables, _ = peer.requests[0]
        assert variables["CONTENT_LENGTH"] == "100000"
        assert "HTTP_TRANSFER_ENCODING" not in variables

    run(scenario())


def test_vars_over_64k_are_refused_with_431() -> None:
    async def scenario() -> None:
        async with ProxiedLocation(proxy_location(), "127.0.0.1:1") as setup:
            with pytest.raises(ClientError) as info:
                await setup.request("GET", "/", headers=[(b"cookie", b"x" * 70_000)])
        assert info.value.status == 431
        assert "uwsgi request is too big" in str(info.value)

    run(scenario())


# --- next_upstream -------------------------------------------------------------------------


def test_connect_refused_goes_to_the_next_peer_and_is_logged() -> None:
    async def scenario() -> None:
        dead = refused_address()
        async with (
            FakePeer(uwsgi_ok) as peer,
            ProxiedLocation(proxy_location(), dead, peer.address) as setup,
        ):
            for _ in range(2):
                sink = await setup.request("GET", "/")
                assert sink.status == 200
            report = setup.last.request.upstream
        lines = setup.log.matching("connect() to")
        assert lines[0] == (
            f"connect() to {dead} failed (111: Connection refused) while connecting to upstream"
            " (hint: is the app server running and listening on that address?),"
            ' client: 127.0.0.1, server: localhost, request: "GET / HTTP/1.1",'
            f' upstream: "uwsgi://{dead}", host: "localhost"'
        )
        assert setup.log.matching("upstream server temporarily disabled while connecting")
        # The dead peer is out for fail_timeout: the second request went straight to the live one.
        assert report is not None and report.addr == peer.address
        assert len(lines) == 1

    run(scenario())


def test_post_is_retried_only_when_nothing_was_sent() -> None:
    async def closes(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_uwsgi(reader)  # reads the request, then hangs up without a word

    async def scenario() -> None:
        async with FakePeer(closes) as bad, FakePeer(uwsgi_ok) as good:
            async with ProxiedLocation(
                proxy_location(), bad.address, good.address, max_fails=0
            ) as setup:
                # GET: the premature close is an "error", retried on the next peer.
                sink = await setup.request("GET", "/")
                assert sink.status == 200
                assert setup.last.request.upstream.addr == f"{bad.address}, {good.address}"
            async with ProxiedLocation(
                proxy_location(), bad.address, good.address, max_fails=0
            ) as setup:
                with pytest.raises(UpstreamError) as info:
                    # POST reached the app: sending it again could charge a card twice.
                    await setup.request("POST", "/", body=b"pay")
                assert (
                    "upstream prematurely closed connection while reading response header"
                    in str(info.value)
                )
                # The front adds the context; the peer is in the upstream report for it.
                assert setup.last.request.upstream.url == f"uwsgi://{bad.address}"
                assert info.value.status == 502
            async with ProxiedLocation(proxy_location(), refused_address(), good.address) as setup:
                sink = await setup.request("POST", "/", body=b"pay")  # refused: never sent
                assert sink.status == 200
            location = proxy_location(next_upstream=("error", "timeout", "non_idempotent"))
            async with ProxiedLocation(location, bad.address, good.address, max_fails=0) as setup:
                sink = await setup.request("POST", "/", body=b"pay")
                assert sink.status == 200

    run(scenario())


def test_next_upstream_off_and_tries() -> None:
    async def scenario() -> None:
        dead = [refused_address() for _ in range(3)]
        async with FakePeer(uwsgi_ok) as good:
            async with ProxiedLocation(
                proxy_location(next_upstream=()), dead[0], good.address
            ) as setup:
                with pytest.raises(UpstreamError, match="Connection refused"):
                    await setup.request()
                assert setup.last.request.upstream.addr == dead[0]
            location = proxy_location(next_upstream_tries=2)
            async with ProxiedLocation(location, *dead, good.address) as setup:
                with pytest.raises(UpstreamError):
                    await setup.request()
                assert setup.last.request.upstream.addr.count(",") == 1

    run(scenario())


def test_all_peers_down_gives_no_live_upstreams() -> None:
    async def scenario() -> None:
        dead = [refused_address(), refused_address()]
        async with ProxiedLocation(proxy_location(), *dead) as setup:
            with pytest.raises(UpstreamError) as first:
                await setup.request()
            assert "Connection refused" in str(first.value)
            with pytest.raises(UpstreamError) as second:
                await setup.request()
        assert str(second.value).startswith(
            'no live upstreams while connecting to upstream "app" (hint: every server'
        )
        assert second.value.status == 502
        assert setup.last.request.upstream.url == "uwsgi://app"

    run(scenario())


def test_hung_peer_times_out_with_504() -> None:
    async def hangs(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_uwsgi(reader)
        await asyncio.sleep(30)

    async def scenario() -> None:
        async with FakePeer(hangs) as peer:
            async with ProxiedLocation(proxy_location(read_timeout=0.2), peer.address) as setup:
                with pytest.raises(UpstreamTimeout) as info:
                    await setup.request()
        message = str(info.value)
        assert info.value.status == 504
        assert message.startswith(
            "upstream timed out (110: Connection timed out) while reading response header"
            " from upstream (hint: the app took longer than proxy_read_timeout (0.2s)"
        )
        assert setup.last.request.upstream.url == f"uwsgi://{peer.address}"

    run(scenario())


def test_http_502_is_retried_when_configured() -> None:
    async def bad_gateway(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_uwsgi(reader)
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad")

    async def scenario() -> None:
        async with FakePeer(bad_gateway) as bad, FakePeer(uwsgi_ok) as good:
            location = proxy_location(next_upstream=("error", "timeout", "http_502"))
            async with ProxiedLocation(location, bad.address, good.address) as setup:
                sink = await setup.request()
                assert sink.status == 200
                assert setup.log.matching("upstream returned 502")
            async with ProxiedLocation(proxy_location(), bad.address, good.address) as setup:
                sink = await setup.request()
                assert (sink.status, sink.body) == (502, b"bad")  # relayed as the app said it
            # The last peer's 502 is relayed when nobody is left to try.
            async with ProxiedLocation(location, bad.address) as setup:
                sink = await setup.request()
                assert sink.status == 502

    run(scenario())


def test_invalid_response_head_is_a_502() -> None:
    async def garbage(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_uwsgi(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")

    async def scenario() -> None:
        async with (
            FakePeer(garbage) as peer,
            ProxiedLocation(proxy_location(), peer.address) as setup,
        ):
            with pytest.raises(UpstreamError, match="upstream sent invalid header"):
                await setup.request()

    run(scenario())


# --- relaying ---------------------------------------------------------------------------------


def test_body_cut_after_the_head_aborts_and_logs() -> None:
    async def short(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_uwsgi(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nServer: x\r\n\r\n0123456789")

    async def scenario() -> None:
        async with (
            FakePeer(short) as peer,
            ProxiedLocation(proxy_location(), peer.address) as setup,
        ):
            sink = FakeSink()
            with pytest.raises(ResponseAborted):
                await setup.request(sink=sink)
        assert sink.status == 200 and sink.body == b"0123456789" and not sink.ended
        assert sink.header("content-length") == "100" and sink.header("server") is None
        assert setup.log.matching(
            "upstream prematurely closed connection while reading response body from upstream,"
        )

    run(scenario())


def test_a_slow_client_pauses_the_upstream_read() -> None:
    size = 8 * 1024 * 1024
    written = asyncio.Event()

    async def big(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_uwsgi(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(b"x" * size)
        peer.requests.append(writer.transport)
        written.set()
        await writer.drain()

    async def scenario() -> None:
        async with FakePeer(big) as peer, ProxiedLocation(proxy_location(), peer.address) as setup:
            gate = asyncio.Event()
            sink = FakeSink(gate=gate)
            task = asyncio.create_task(setup.request(sink=sink))
            await written.wait()
            await asyncio.sleep(0.3)
            # The client takes nothing: the proxy holds one chunk, the rest waits upstream.
            assert sink.sent == 0
            assert peer.requests[0].get_write_buffer_size() > size // 2
            gate.set()
            await task
        assert sink.sent == size and sink.ended

    run(scenario())


def test_client_gone_drops_the_upstream_unless_ignore_client_abort() -> None:
    # Far more than loopback socket buffers can absorb, so the upstream must notice the drop.
    size = 64 * 1024 * 1024
    done: list[str] = []

    async def stream(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_uwsgi(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        try:
            for _ in range(size // 65536):
                writer.write(b"y" * 65536)
                await writer.drain()
            done.append("complete")
        except ConnectionError:
            done.append("reset")

    async def scenario() -> None:
        async with FakePeer(stream) as peer:
            async with ProxiedLocation(proxy_location(), peer.address) as setup:
                with pytest.raises(ClientGone):
                    await setup.request(sink=FakeSink(gone_after=100_000))
                for _ in range(100):
                    if done:
                        break
                    await asyncio.sleep(0.02)
                assert done == ["reset"]
            done.clear()
            async with ProxiedLocation(
                proxy_location(ignore_client_abort=True), peer.address
            ) as setup:
                with pytest.raises(ClientGone):
                    await setup.request(sink=FakeSink(gone_after=100_000))
                assert done == ["complete"]

    run(scenario())


def test_ignore_client_abort_survives_cancellation() -> None:
    answered = asyncio.Event()

    async def slow(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_uwsgi(reader)
        await asyncio.sleep(0.3)
        writer.write(ok_response())
        await writer.drain()
        answered.set()

    async def scenario() -> None:
        async with FakePeer(slow) as peer:
            location = proxy_location(ignore_client_abort=True)
            async with ProxiedLocation(location, peer.address) as setup:
                sink = FakeSink()
                task = asyncio.create_task(setup.request(sink=sink))
                await asyncio.sleep(0.1)
                task.cancel()  # what the front does when the client disconnects
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.wait_for(answered.wait(), 5)
                for _ in range(50):
                    if sink.ended:
                        break
                    await asyncio.sleep(0.01)
                assert sink.ended  # the upstream exchange ran to its end

    run(scenario())


# --- HTTP upstreams -----------------------------------------------------------------------------


def test_http_headers_both_ways() -> None:
    async def echo_head(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        parser = RequestParser()
        request = await read_http(reader, parser)
        assert request is not None
        peer.requests.append(request)
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\n"
            b"X-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nDate: then\r\n"
            b"X-App: yes\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        await writer.drain()

    async def scenario() -> None:
        async with FakePeer(echo_head) as peer:
            location = proxy_location(
                protocol="http",
                params=(ProxyParam("X-Request-Uri", "$request_uri"), ProxyParam("X-Empty", "")),
            )
            async with ProxiedLocation(location, peer.address) as setup:
                sink = await setup.request(
                    "PUT",
                    "/up?x=1",
                    headers=[
                        (b"connection", b"keep-alive, x-secret"),
                        (b"x-secret", b"hop"),
                        (b"keep-alive", b"300"),
                        (b"te", b"trailers"),
                        (b"proxy", b"http://evil"),
                        (b"x-forwarded-for", b"10.1.1.1"),
                        (b"x-real-ip", b"6.6.6.6"),
                        (b"accept", b"*/*"),
                    ],
                    body=b"0123456789" * 10_000,
                    chunked=True,
                    client_ip="192.0.2.9",
                )
        head, body = peer.requests[0]
        sent = dict(head.headers)
        assert head.method == "PUT" and head.target == b"/up?x=1" and head.chunked
        assert body == b"0123456789" * 10_000
        assert sent[b"host"] == b"localhost"
        assert sent[b"x-forwarded-for"] == b"10.1.1.1, 192.0.2.9"
        assert sent[b"x-real-ip"] == b"192.0.2.9"
        assert sent[b"x-forwarded-proto"] == b"http"
        assert sent[b"x-request-uri"] == b"/up?x=1"
        assert sent[b"accept"] == b"*/*"
        for hop in (b"x-secret", b"keep-alive", b"te", b"proxy", b"x-empty", b"connection"):
            assert hop not in sent
        assert sink.status == 200 and sink.body == b"abc"
        names = sink.header_names()
        assert names == ["x-app"]

    run(scenario())


def test_http_pool_reuses_connections() -> None:
    async def scenario() -> None:
        async with FakePeer(http_keepalive) as peer:
            async with ProxiedLocation(proxy_location(protocol="http"), peer.address) as setup:
                for _ in range(10):
                    sink = await setup.request()
                    assert sink.body == b"port %d" % peer.port
                pool = setup.runtime.pool("app")
                assert (pool.opened, pool.reused, peer.connections) == (1, 9, 1)

    run(scenario())


def test_stale_pooled_connection_is_retried_once_on_a_new_one() -> None:
    async def drops_second(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Answers one request per connection, keep-alive, then hangs up on the next one
        # without answering: the race between our reuse and its idle timeout.
        parser = RequestParser()
        request = await read_http(reader, parser)
        if request is None:
            return
        peer.requests.append(request)
        writer.write(ok_response())
        await writer.drain()
        await read_http(reader, parser)

    async def scenario() -> None:
        async with FakePeer(drops_second) as peer:
            async with ProxiedLocation(proxy_location(protocol="http"), peer.address) as setup:
                assert (await setup.request()).status == 200
                assert (await setup.request()).status == 200
                assert setup.log.matching("on a kept-alive connection, retrying on a new one")
                assert not setup.log.matching("[error]")
                assert setup.runtime.pool("app").opened == 2
                # POST is not idempotent: a stale connection is the app's word against ours.
                with pytest.raises(UpstreamError, match="prematurely closed"):
                    await setup.request("POST", "/", body=b"once")

    run(scenario())


async def uwsgi_keepalive(
    peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """An app server that accepts the WSGISTACK_KEEPALIVE offer: framed answers, same connection."""
    while True:
        try:
            variables, body = await read_uwsgi(reader)
        except asyncio.IncompleteReadError:
            return
        peer.requests.append((variables, body))
        accepted = b"Wsgistack-Keepalive: timeout=5\r\n" if "WSGISTACK_KEEPALIVE" in variables else b""
        writer.write(ok_response(b"port %d" % peer.port, extra=b"X-App: 1\r\n" + accepted))
        await writer.drain()
        if not accepted:
            return


def test_uwsgi_pool_keeps_connections_an_app_server_accepts() -> None:
    async def scenario() -> None:
        async with FakePeer(uwsgi_keepalive) as peer:
            async with ProxiedLocation(proxy_location(), peer.address) as setup:
                sinks = [await setup.request() for _ in range(10)]
                body = await setup.request("POST", "/", body=b"payload")
                pool = setup.runtime.pool("app")
                assert (pool.opened, pool.reused, peer.connections) == (1, 10, 1)
        assert all(sink.status == 200 and sink.body == b"port %d" % peer.port for sink in sinks)
        # The acceptance is between edge and the app server: the client never sees it.
        assert sinks[0].header_names() == ["content-length", "x-app"]
        assert body.status == 200 and peer.requests[-1][1] == b"payload"

    run(scenario())


def test_uwsgi_peers_that_ignore_the_offer_get_a_connection_per_request() -> None:
    """uWSGI, gunicorn --protocol uwsgi: a raw answer, then close, as without the offer."""

    async def scenario() -> None:
        async with FakePeer(uwsgi_ok) as peer:
            async with ProxiedLocation(proxy_location(), peer.address) as setup:
                for _ in range(3):
                    assert (await setup.request()).status == 200
                pool = setup.runtime.pool("app")
                assert (pool.opened, pool.reused, len(pool), peer.connections) == (3, 0, 0, 3)

    run(scenario())


def test_uwsgi_keepalive_zero_sends_standard_packets_and_never_pools() -> None:
    async def scenario() -> None:
        async with FakePeer(uwsgi_keepalive) as peer:
            async with ProxiedLocation(proxy_location(), peer.address, keepalive=0) as setup:
                for _ in range(3):
                    assert (await setup.request()).status == 200
        assert peer.connections == 3
        assert all("WSGISTACK_KEEPALIVE" not in variables for variables, _ in peer.requests)

    run(scenario())


def test_stale_pooled_uwsgi_connection_is_retried_once_on_a_new_one() -> None:
    async def accepts_then_drops(
        peer: FakePeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # Accepts the offer for one request, then closes without answering the next:
        # the race between our reuse and the app server's idle timeout.
        variables, body = await read_uwsgi(reader)
        peer.requests.append((variables, body))
        writer.write(ok_response(extra=b"Wsgistack-Keepalive: timeout=5\r\n"))
        await writer.drain()
        await read_uwsgi(reader)

    async def scenario() -> None:
        async with FakePeer(accepts_then_drops) as peer:
            async with ProxiedLocation(proxy_location(), peer.address) as setup:
                assert (await setup.request()).status == 200
                assert (await setup.request()).status == 200
                assert setup.log.matching("on a kept-alive connection, retrying on a new one")
                assert not setup.log.matching("[error]")
                assert setup.runtime.pool("app").opened == 2
                # POST is not idempotent: it is not sent twice.
                with pytest.raises(UpstreamError, match="prematurely closed"):
                    await setup.request("POST", "/", body=b"once")
        assert [variables["REQUEST_METHOD"] for variables, _ in peer.requests] == ["GET", "GET"]

    run(scenario())


def test_uwsgi_idle_connections_leave_before_the_app_servers_timeout() -> None:
    async def scenario() -> None:
        async with FakePeer(uwsgi_keepalive) as peer:
            location = proxy_location()
            async with ProxiedLocation(location, peer.address, keepalive_timeout=60.0) as setup:
                await setup.request()
                pool = setup.runtime.pool("app")
                (idle,) = pool._idle
                # "timeout=5" from the app server: we give up one second before it does.
                assert idle.idle_until == pytest.approx(setup.runtime.clock() + 4.0, abs=0.5)

    run(scenario())


def test_cache_serves_hits_without_the_upstream() -> None:
    async def scenario() -> None:
        async with FakePeer(uwsgi_ok) as peer:
            location = proxy_location(cache=CacheSettings())
            async with ProxiedLocation(location, peer.address) as setup:
                first = await setup.request("GET", "/page")
                second = await setup.request("GET", "/page")
                assert setup.last.request.upstream.cache_status == "HIT"
                third = await setup.request("GET", "/page?other")
        assert first.header("x-cache") == "MISS" and second.header("x-cache") == "HIT"
        assert first.body == second.body and second.header("content-length") == str(len(first.body))
        assert third.header("x-cache") == "MISS"
        assert len(peer.requests) == 2

    run(scenario())
