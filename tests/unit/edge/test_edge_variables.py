"""Every nginx variable, in every place that expands one, gives the same value.

The places: a uwsgi param, an HTTP proxy header (and ``host_header``), a
``try_files`` entry, a ``return`` body and a ``return`` redirect.  Each is
driven through its real handler (the proxy through a loopback peer that
records what it received); the value each shows must be the one the engine
gives, and the engine's values are pinned for a request with repeats,
cookies and mixed-case arguments.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.config.schema import (
    EdgeConfig,
    Location,
    ProxyHandler,
    ProxyParam,
    ReturnHandler,
    Server,
    StaticHandler,
    Upstream,
    UpstreamServer,
)
from edge.config.syntax import parse_endpoint, unknown_variables
from edge.exchange import Exchange
from edge.handlers import InternalRedirect
from edge.handlers.fixed_response import FixedResponse
from edge.handlers.proxy import ProxyHandlerImpl
from edge.handlers.static import StaticFiles
from edge.upstream.pool import UpstreamRuntime
from edge.variables import KNOWN, PREFIXES, compile_template, expand
from httpproto import NEED_DATA, RequestHead, RequestParser
from tests.support.fake_exchange import FakeSink, LogCollector, make_exchange
from uwsgiproto import decode_vars

HEADERS = [
    (b"cookie", b"sid=abc; Theme=dark"),
    (b"cookie", b"lang=en"),
    (b"x-forwarded-for", b"10.0.0.1"),
    (b"x-multi", b"a"),
    (b"x-multi", b"b"),
    (b"content-type", b"text/plain"),
    (b"user-agent", b"tester/1.0"),
    (b"x-request-id", b"req-42"),  # trusted below, so $request_id is the same everywhere
]
TARGET = "/p%20q/x?a=1&Mixed=Two&empty="

NAMES = sorted(KNOWN) + [
    "http_x_multi",
    "http_cookie",
    "http_user_agent",
    "http_missing",
    "cookie_sid",
    "cookie_Theme",
    "cookie_theme",
    "arg_a",
    "arg_mixed",
    "arg_MIXED",
    "arg_empty",
    "arg_missing",
]

EXPECTED = {
    "args": b"a=1&Mixed=Two&empty=",
    "query_string": b"a=1&Mixed=Two&empty=",
    "is_args": b"?",
    "connection_upgrade": b"",  # the request has no Upgrade header
    "content_length": b"",
    "content_type": b"text/plain",
    "document_root": b"",
    "document_uri": b"/p q/x",
    "uri": b"/p q/x",
    "host": b"localhost",
    "https": b"",
    "proxy_add_x_forwarded_for": b"10.0.0.1, 192.0.2.7",
    "remote_addr": b"192.0.2.7",
    "remote_port": b"50000",
    "request_id": b"req-42",
    "request_method": b"GET",
    "request_uri": TARGET.encode(),
    "scheme": b"http",
    "server_addr": b"127.0.0.1",
    "server_name": b"localhost",
    "server_port": b"8000",
    "server_protocol": b"HTTP/1.1",
    "http_x_multi": b"a, b",
    "http_cookie": b"sid=abc; Theme=dark; lang=en",  # Cookie repeats join with "; "
    "http_user_agent": b"tester/1.0",
    "http_missing": b"",
    "cookie_sid": b"abc",
    "cookie_Theme": b"dark",
    "cookie_theme": b"",  # cookie names are case-sensitive
    "arg_a": b"1",
    "arg_mixed": b"Two",  # argument names are not (ngx_http_arg)
    "arg_MIXED": b"Two",
    "arg_empty": b"",
    "arg_missing": b"",
}


def _exchange(location: Location, server: Server | None = None) -> Exchange:
    server = server or Server(server_name=("localhost",), locations=(location,))
    config = EdgeConfig(servers=(server,))
    exchange = make_exchange(
        config, "GET", TARGET, headers=list(HEADERS), client_ip="192.0.2.7"
    )
    exchange.request.trusts_request_id = True
    return exchange


def _value(name: str) -> bytes:
    exchange = _exchange(Location("/", "prefix", ReturnHandler(200)))
    return expand(compile_template("$" + name), exchange.request)


def test_every_known_name_and_family_has_a_test_and_the_loader_accepts_it() -> None:
    assert set(NAMES) == set(EXPECTED)
    assert {prefix for prefix in PREFIXES} == {"http_", "cookie_", "arg_"}
    for name in NAMES:
        assert unknown_variables(f"x ${name} ${{{name}}}") == [], name
    assert unknown_variables("$nosuch and $") == ["nosuch", ""]


@pytest.mark.parametrize("name", NAMES)
def test_the_engine_gives_nginx_values(name: str) -> None:
    assert _value(name) == EXPECTED[name]


@pytest.mark.parametrize("name", NAMES)
def test_return_body_and_redirect_show_the_same_value(name: str) -> None:
    async def scenario() -> None:
        body_location = Location("/", "prefix", ReturnHandler(200, body=f"[${name}]"))
        exchange = _exchange(body_location)
        await FixedResponse(body_location, body_location.handler).handle(exchange)  # type: ignore[arg-type]
        assert isinstance(exchange.response, FakeSink)
        assert exchange.response.body == b"[" + EXPECTED[name] + b"]"
        redirect = Location("/", "prefix", ReturnHandler(302, location=f"/to?v=${name}"))
        exchange = _exchange(redirect)
        await FixedResponse(redirect, redirect.handler).handle(exchange)  # type: ignore[arg-type]
        assert isinstance(exchange.response, FakeSink)
        assert exchange.response.header("location") == "/to?v=" + EXPECTED[name].decode()

    asyncio.run(scenario())


@pytest.mark.parametrize("name", NAMES)
def test_try_files_shows_the_same_value(name: str, tmp_path: Path) -> None:
    """The first entry (a file that is not there) and the fallback both expand it."""

    async def scenario() -> None:
        settings = StaticHandler(
            root=str(tmp_path), try_files=(f"/missing-${name}", f"/fallback?v=${name}")
        )
        location = Location("/", "prefix", settings)
        exchange = _exchange(location)
        with pytest.raises(InternalRedirect) as redirect:
            await StaticFiles(location, settings).handle(exchange)
        # $document_root is the location's own: here the static root.
        expected = str(tmp_path).encode() if name == "document_root" else EXPECTED[name]
        assert redirect.value.target == "/fallback?v=" + expected.decode()

    asyncio.run(scenario())


class _Recorder:
    """A loopback peer that records one uwsgi packet or HTTP head per connection, answers 200."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.seen: list[dict[str, bytes]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.protocol == "uwsgi":
            header = await reader.readexactly(4)
            block = await reader.readexactly(int.from_bytes(header[1:3], "little"))
            self.seen.append({k: v.encode("latin-1") for k, v in decode_vars(block).items()})
        else:
            parser = RequestParser()
            event = parser.next_event()
            while event is NEED_DATA:
                parser.feed(await reader.read(65536))
                event = parser.next_event()
            assert isinstance(event, RequestHead)
            self.seen.append({name.decode(): value for name, value in event.headers})
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.mark.parametrize("protocol", ["uwsgi", "http"])
def test_proxy_params_and_host_header_show_the_same_values(protocol: str) -> None:
    async def scenario() -> None:
        recorder = _Recorder(protocol)
        async with recorder as address:
            # Numbered names: $cookie_Theme and $cookie_theme are two variables.
            prefix = "X_V_" if protocol == "uwsgi" else "X-V-"
            params = tuple(ProxyParam(f"{prefix}{i}", f"${name}") for i, name in enumerate(NAMES))
            handler = ProxyHandler(
                upstream="app", protocol=protocol, params=params, host_header="h-$arg_mixed"
            )
            location = Location("/", "prefix", handler)
            server = Server(server_name=("localhost",), locations=(location,))
            upstream = Upstream("app", (UpstreamServer(parse_endpoint(address)),), keepalive=0)
            config = EdgeConfig(servers=(server,), upstreams=(upstream,))
            runtime = UpstreamRuntime(config, LogCollector())
            await runtime.start()
            try:
                exchange = _exchange(location, server)
                await ProxyHandlerImpl(location, runtime).handle(exchange)
            finally:
                await runtime.close()
        (seen,) = recorder.seen
        for i, name in enumerate(NAMES):
            if protocol == "uwsgi":
                key = f"X_V_{i}"
            else:
                key = f"x-v-{i}"
                if not EXPECTED[name]:
                    # nginx's proxy_set_header: an empty value removes the header.
                    assert key not in seen, name
                    continue
            assert seen[key] == EXPECTED[name], name
        if protocol == "http":
            assert seen["host"] == b"h-Two"

    asyncio.run(scenario())


def test_request_id_is_32_hex_made_once_per_request_and_trusted_only_when_sane() -> None:
    location = Location("/", "prefix", ReturnHandler(200))
    config = EdgeConfig(servers=(Server(locations=(location,)),))
    template = compile_template("$request_id")
    first = make_exchange(config, "GET", "/").request
    value = expand(template, first)
    assert len(value) == 32 and all(c in b"0123456789abcdef" for c in value)
    assert expand(template, first) == value  # fixed for the request
    assert expand(template, make_exchange(config, "GET", "/").request) != value
    untrusted = make_exchange(config, "GET", "/", headers=[(b"x-request-id", b"abc")]).request
    assert len(expand(template, untrusted)) == 32  # trust_incoming is off
    for incoming, taken in ((b"abc-1", True), (b"", False), (b"a b", False), (b"x" * 129, False)):
        request = make_exchange(config, "GET", "/", headers=[(b"x-request-id", incoming)]).request
        request.trusts_request_id = True
        assert (expand(template, request) == incoming) is taken, incoming
