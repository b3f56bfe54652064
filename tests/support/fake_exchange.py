"""A fake front for driving edge handlers without edge.protocol: request, body, sink.

``FakeSink`` records what a handler sends (and can stall or vanish like a
slow or departing client); ``FakeBody`` serves a request body from bytes in
pieces, as the front's reader does.  ``proxy_config`` builds a one-location
``EdgeConfig`` in code, so tests need no YAML; ``ProxiedLocation`` drives the
real ``ProxyHandlerImpl`` for one such location.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.config.schema import (
    EdgeConfig,
    Endpoint,
    Location,
    ProxyHandler,
    Server,
    Upstream,
    UpstreamServer,
)
from edge.exchange import ClientGone, Exchange, Request
from edge.handlers.proxy import ProxyHandlerImpl
from edge.upstream.pool import UpstreamRuntime


class FakeBody:
    """A request body served from bytes, ``piece`` bytes at a time."""

    def __init__(self, data: bytes = b"", *, chunked: bool = False, piece: int = 65536) -> None:
        self.data = data
        self.chunked = chunked
        self.piece = piece
        self.position = 0
        self.read_calls = 0
        self.temp_paths: list[str] = []

    @property
    def length(self) -> int | None:
        return None if self.chunked else len(self.data)

    async def read(self, max_bytes: int = 65536) -> bytes:
        self.read_calls += 1
        await asyncio.sleep(0)
        size = min(max_bytes, self.piece)
        chunk = self.data[self.position : self.position + size]
        self.position += len(chunk)
        return chunk

    async def read_all(
        self, spool_limit: int = 1 << 20
    ) -> tuple[int, list[bytes] | os.PathLike[str]]:
        rest = self.data[self.position :]
        self.position = len(self.data)
        if len(rest) <= spool_limit:
            return len(rest), [rest[i : i + self.piece] for i in range(0, len(rest), self.piece)]
        handle = tempfile.NamedTemporaryFile(prefix="fake-body-", delete=False)
        with handle:
            handle.write(rest)
        self.temp_paths.append(handle.name)
        return len(rest), Path(handle.name)

    def cleanup(self) -> None:
        for path in self.temp_paths:
            os.unlink(path)
        self.temp_paths.clear()


@dataclass
class FakeSink:
    """Collects the response; ``gone_after`` bytes makes the client vanish, ``gate`` stalls it."""

    gone_after: int | None = None
    gate: asyncio.Event | None = None
    status: int | None = None
    reason: bytes | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    sent: int = 0

    @property
    def started(self) -> bool:
        return self.status is not None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    def header_names(self) -> list[str]:
        return [key.decode("latin-1").lower() for key, _ in self.headers]

    async def send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> None:
        assert self.status is None, "send_head called twice"
        self.status = status
        self.headers = list(headers)
        self.reason = reason

    async def send(self, data: bytes) -> None:
        assert self.status is not None, "send before send_head"
        if self.gate is not None:
            await self.gate.wait()
        if self.gone_after is not None and self.sent + len(data) > self.gone_after:
            raise ClientGone()
        self.sent += len(data)
        self.chunks.append(data)

    async def sendfile(self, file: object, offset: int, count: int) -> None:
        raise NotImplementedError

    async def end(self) -> None:
        assert not self.ended, "end called twice"
        self.ended = True


def proxy_location(upstream: str = "app", path: str = "/", **settings: object) -> Location:
    return Location(path=path, match="prefix", handler=ProxyHandler(upstream=upstream, **settings))  # type: ignore[arg-type]


def upstream(name: str, *addresses: str | Endpoint, **settings: object) -> Upstream:
    servers = []
    for address in addresses:
        if isinstance(address, Endpoint):
            endpoint = address
        elif address.startswith("unix:"):
            endpoint = Endpoint(path=address[5:])
        else:
            host, _, port = address.rpartition(":")
            endpoint = Endpoint(host=host.strip("[]"), port=int(port))
        server_settings = {
            key: value
            for key, value in settings.items()
            if key in ("weight", "max_fails", "fail_timeout", "backup", "down", "max_conns")
        }
        servers.append(UpstreamServer(endpoint=endpoint, **server_settings))  # type: ignore[arg-type]
    group_settings = {
        key: value
        for key, value in settings.items()
        if key in ("balance", "resolve", "keepalive", "keepalive_timeout")
    }
    return Upstream(name=name, servers=tuple(servers), **group_settings)  # type: ignore[arg-type]


def proxy_config(location: Location, *upstreams: Upstream) -> EdgeConfig:
    server = Server(server_name=("localhost",), locations=(location,))
    return EdgeConfig(servers=(server,), upstreams=upstreams)


def make_exchange(
    config: EdgeConfig,
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    *,
    chunked: bool = False,
    host: str = "localhost",
    client_ip: str = "127.0.0.1",
    sink: FakeSink | None = None,
    piece: int = 65536,
) -> Exchange:
    server = config.servers[0]
    location = server.locations[0]
    raw_target = target.encode("utf-8")
    raw_path, _, query = raw_target.partition(b"?")
    all_headers = [(b"host", host.encode())]
    all_headers += headers or []
    content_length: int | None = None
    if chunked:
        all_headers.append((b"transfer-encoding", b"chunked"))
    elif body or method in ("POST", "PUT"):
        content_length = len(body)
        all_headers.append((b"content-length", str(len(body)).encode()))
    from urllib.parse import unquote

    request = Request(
        method=method,
        target=raw_target,
        path=unquote(raw_path.decode("latin-1"), errors="surrogateescape"),
        raw_path=raw_path,
        query=query,
        http_version="1.1",
        headers=all_headers,
        host=host,
        scheme="http",
        client_ip=client_ip,
        client_port=50000,
        peer_ip=client_ip,
        server_addr="127.0.0.1",
        server_port=8000,
        server=server,
        location=location,
        content_length=content_length,
        chunked=chunked,
        keep_alive=True,
        started=time.time(),
        request_line=f"{method} {target} HTTP/1.1",
    )
    return Exchange(
        request=request,
        body=FakeBody(body, chunked=chunked, piece=piece),
        response=sink or FakeSink(),
    )


class LogCollector:
    """An ``error_log(level, message)`` that keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    def matching(self, text: str) -> list[str]:
        return [message for _level, message in self.lines if text in message]

    def __str__(self) -> str:
        return "\n".join(f"[{level}] {message}" for level, message in self.lines)


class ProxiedLocation:
    """The real proxy handler and upstream runtime for one location, driven in-process."""

    def __init__(
        self, location: Location, *addresses: str, dns: Any = None, **upstream_settings: object
    ) -> None:
        self.log = LogCollector()
        self.config = proxy_config(location, upstream("app", *addresses, **upstream_settings))
        self.runtime = UpstreamRuntime(self.config, self.log, resolve=dns)
        self.handler = ProxyHandlerImpl(location, self.runtime)

    async def __aenter__(self) -> ProxiedLocation:
        await self.runtime.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runtime.close()

    async def request(self, method: str = "GET", target: str = "/", **kwargs: Any) -> FakeSink:
        exchange = make_exchange(self.config, method, target, **kwargs)
        self.last = exchange
        try:
            await self.handler.handle(exchange)
        finally:
            assert isinstance(exchange.body, FakeBody)
            exchange.body.cleanup()
        assert isinstance(exchange.response, FakeSink)
        return exchange.response

    async def json(self, target: str, **kwargs: Any) -> Any:
        sink = await self.request("GET", target, **kwargs)
        assert sink.status == 200, (sink.status, sink.body, str(self.log))
        return json.loads(sink.body)
