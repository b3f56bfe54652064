"""Keep-alive pools, DNS re-resolution and reloads of the upstream runtime (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence

import pytest

from edge.config.schema import Endpoint
from edge.upstream.connection import UpstreamConnection
from edge.upstream.pool import ConnectionPool, UpstreamRuntime
from edge.upstream.resolver import Resolver, build_specs, needs_dns
from tests.support.fake_exchange import (
    LogCollector,
    proxy_config,
    proxy_location,
    upstream,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTransport:
    def __init__(self) -> None:
        self.closing = False
        self.aborted = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True


@pytest.fixture(scope="module", autouse=True)
def _loop() -> Iterator[None]:
    """A loop the pooled connections can belong to (they never wait on it here)."""
    global _LOOP
    _LOOP = asyncio.new_event_loop()
    yield
    _LOOP.close()


_LOOP: asyncio.AbstractEventLoop


def connection(endpoint: Endpoint) -> UpstreamConnection:
    conn = UpstreamConnection(endpoint, _LOOP)
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    return conn


def closing(conn: UpstreamConnection) -> bool:
    assert conn.transport is not None
    return conn.transport.is_closing()


A = Endpoint(host="10.0.0.1", port=8000)
B = Endpoint(host="10.0.0.2", port=8000)


def test_pool_hands_back_the_most_recent_live_connection() -> None:
    clock = Clock()
    pool = ConnectionPool(max_idle=4, idle_timeout=60.0, clock=clock)
    first, second, other = connection(A), connection(A), connection(B)
    for conn in (first, second, other):
        pool.give(conn)
    assert pool.take(A) is second
    second.eof_received()  # the backend closed it meanwhile
    pool.give(second)
    assert closing(second)  # a dead connection is not parked
    first.eof_received()
    assert pool.take(A) is None  # the only one left for A is dead: dropped, not handed out
    assert first.transport.aborted  # type: ignore[union-attr]
    assert pool.take(B) is other
    assert pool.reused == 2


def test_pool_bounds_idle_connections_and_their_age() -> None:
    clock = Clock()
    pool = ConnectionPool(max_idle=2, idle_timeout=10.0, clock=clock)
    conns = [connection(A) for _ in range(3)]
    for conn in conns:
        pool.give(conn)
    assert len(pool) == 2 and closing(conns[0])  # least recently used went first
    clock.now += 11
    assert pool.take(A) is None
    assert len(pool) == 0  # take dropped every expired connection it looked at
    pool.give(connection(B))
    pool.give(connection(A))
    clock.now += 11
    assert pool.sweep() == 2 and len(pool) == 0


def test_backend_keep_alive_timeout_shortens_ours() -> None:
    clock = Clock()
    pool = ConnectionPool(max_idle=4, idle_timeout=60.0, clock=clock)
    conn = connection(A)
    pool.give(conn, keep_alive_hint=5.0)  # Keep-Alive: timeout=5
    assert conn.idle_until == clock.now + 4.0
    short = connection(A)
    pool.give(short, keep_alive_hint=2.0)
    assert short.idle_until == clock.now + 1.0
    pool.retain({B})
    assert len(pool) == 0 and closing(conn)
    none_kept = ConnectionPool(max_idle=0, idle_timeout=60.0, clock=clock)
    lone = connection(A)
    none_kept.give(lone)
    assert len(none_kept) == 0 and closing(lone)


def test_needs_dns() -> None:
    assert needs_dns(Endpoint(host="appserver", port=3031))
    assert not needs_dns(Endpoint(host="127.0.0.1", port=3031))
    assert not needs_dns(Endpoint(host="::1", port=3031))
    assert not needs_dns(Endpoint(path="/run/app.sock"))


def test_build_specs_one_peer_per_address() -> None:
    group = upstream("app", "appserver:3031", "127.0.0.1:4000", weight=2)
    specs = build_specs(group, {("appserver", 3031): ("10.0.0.5", "10.0.0.6")})
    assert [str(s.endpoint) for s in specs] == ["10.0.0.5:3031", "10.0.0.6:3031", "127.0.0.1:4000"]
    assert all(s.server.weight == 2 for s in specs)
    assert str(specs[0].server.endpoint) == "appserver:3031"
    unresolved = build_specs(group, {})
    assert [str(s.endpoint) for s in unresolved] == ["appserver:3031", "127.0.0.1:4000"]


class FakeDns:
    def __init__(self, answers: dict[str, Sequence[str] | Exception]) -> None:
        self.answers = answers
        self.calls = 0

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls += 1
        answer = self.answers[host]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_scale_up_and_down_keeps_the_state_of_peers_that_stay() -> None:
    async def scenario() -> None:
        log = LogCollector()
        dns = FakeDns({"appserver": ["10.0.0.1"]})
        config = proxy_config(proxy_location(), upstream("app", "appserver:3031", max_fails=3))
        runtime = UpstreamRuntime(config, log, resolve=dns)
        await runtime.start()
        try:
            group = runtime.group("app")
            assert [str(p.endpoint) for p in group.balancer.peers] == ["10.0.0.1:3031"]
            first = group.balancer.peers[0]
            first.fails = 2  # some passive-health history
            dns.answers["appserver"] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            assert await runtime.resolver.refresh(group)
            assert [str(p.endpoint) for p in group.balancer.peers] == [
                "10.0.0.1:3031",
                "10.0.0.2:3031",
                "10.0.0.3:3031",
            ]
            assert group.balancer.peers[0] is first and first.fails == 2
            assert log.matching("added 10.0.0.2:3031, 10.0.0.3:3031")
            assert not await runtime.resolver.refresh(group)  # same answer: nothing to do
            dns.answers["appserver"] = ["10.0.0.3"]
            assert await runtime.resolver.refresh(group)
            assert [str(p.endpoint) for p in group.balancer.peers] == ["10.0.0.3:3031"]
            assert log.matching("removed 10.0.0.1:3031, 10.0.0.2:3031")
        finally:
            await runtime.close()

    asyncio.run(scenario())


def test_a_failed_lookup_keeps_the_peers_and_logs_once() -> None:
    async def scenario() -> None:
        log = LogCollector()
        dns = FakeDns({"appserver": ["10.0.0.1", "10.0.0.2"]})
        config = proxy_config(proxy_location(), upstream("app", "appserver:3031"))
        runtime = UpstreamRuntime(config, log, resolve=dns)
        await runtime.start()
        try:
            group = runtime.group("app")
            dns.answers["appserver"] = OSError(-2, "Name or service not known")
            for _ in range(3):
                assert not await runtime.resolver.refresh(group)
            assert len(group.balancer.peers) == 2
            warnings = log.matching("could not resolve appserver:3031")
            assert warnings == [
                "could not resolve appserver:3031 (-2: Name or service not known);"
                " keeping its current peers"
            ]
            dns.answers["appserver"] = ["10.0.0.1", "10.0.0.2"]
            await runtime.resolver.refresh(group)
            assert log.matching("appserver:3031 resolves again")
        finally:
            await runtime.close()

    asyncio.run(scenario())


def test_the_loop_re_resolves_every_interval() -> None:
    async def scenario() -> None:
        log = LogCollector()
        dns = FakeDns({"appserver": ["10.0.0.1"]})
        config = proxy_config(proxy_location(), upstream("app", "appserver:3031", resolve=0.05))
        runtime = UpstreamRuntime(config, log, resolve=dns)
        await runtime.start()
        try:
            dns.answers["appserver"] = ["10.0.0.1", "10.0.0.9"]
            for _ in range(100):
                await asyncio.sleep(0.02)
                if len(runtime.balancer("app").peers) == 2:
                    break
            assert [str(p.endpoint) for p in runtime.balancer("app").peers] == [
                "10.0.0.1:3031",
                "10.0.0.9:3031",
            ]
        finally:
            await runtime.close()

    asyncio.run(scenario())


def test_unresolvable_at_start_connects_by_name() -> None:
    async def scenario() -> None:
        log = LogCollector()
        dns = FakeDns({"appserver": OSError(-2, "Name or service not known")})
        runtime = UpstreamRuntime(
            proxy_config(proxy_location(), upstream("app", "appserver:3031")), log, resolve=dns
        )
        await runtime.start()
        try:
            assert [str(p.endpoint) for p in runtime.balancer("app").peers] == ["appserver:3031"]
        finally:
            await runtime.close()

    asyncio.run(scenario())


def test_reload_keeps_upstreams_that_stay() -> None:
    async def scenario() -> None:
        log = LogCollector()
        location = proxy_location(cache=None)
        old = proxy_config(
            location, upstream("app", "10.0.0.1:1", "10.0.0.2:1"), upstream("gone", "10.0.0.9:1")
        )
        runtime = UpstreamRuntime(old, log, resolve=FakeDns({}))
        await runtime.start()
        try:
            group = runtime.group("app")
            kept_peer = group.balancer.peers[0]
            kept_peer.fails = 1
            new = proxy_config(
                location, upstream("app", "10.0.0.1:1", "10.0.0.3:1", balance="least_conn")
            )
            runtime.update(new)
            assert runtime.group("app") is group
            assert group.balancer.balance == "least_conn"
            assert group.balancer.peers[0] is kept_peer and kept_peer.fails == 1
            assert [str(p.endpoint) for p in group.balancer.peers] == ["10.0.0.1:1", "10.0.0.3:1"]
            assert "gone" not in runtime.groups
        finally:
            await runtime.close()

    asyncio.run(scenario())


def test_resolver_loop_survives_and_stops() -> None:
    async def scenario() -> None:
        log = LogCollector()
        resolver = Resolver(lambda: [], log)
        resolver.start()
        await asyncio.sleep(0)
        await resolver.stop()

    asyncio.run(scenario())
