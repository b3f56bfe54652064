"""Per-worker upstream state: peers, keep-alive connection pools, DNS and caches.

Theory of operation
-------------------
``UpstreamRuntime`` is built once per worker from the ``EdgeConfig`` and
holds, for each named upstream, an ``UpstreamGroup``: the pure ``Balancer``
(peers and passive health), a ``ConnectionPool`` of idle keep-alive
connections (HTTP upstreams, and uwsgi upstreams whose app server accepts
the ``WSGISTACK_KEEPALIVE`` extension, docs/uwsgi-keepalive.md), and the
addresses its host names last resolved to.  ``start()`` resolves names once
and starts the re-resolver and the idle sweeper; ``update(config)`` is the
SIGHUP path: upstreams that stay keep their group, so peers that stay keep
their health state and pooled connections; upstreams that left are closed.

The pool follows nginx's ``keepalive N`` (``ngx_http_upstream_keepalive``):
at most ``Upstream.keepalive`` idle connections per upstream in this worker,
the least recently used closed first, each dropped after
``Upstream.keepalive_timeout`` idle seconds.  Connections are taken back
most-recent-first, since the freshest one is the least likely to have been
closed by the backend.  Pain point #9 (the backend closes an idle
connection just as we reuse it) is fought on three fronts:

* a connection whose peer already sent EOF or reset is never handed out;
* a backend's ``Keep-Alive: timeout=N`` (``Wsgistack-Keepalive: timeout=N``
  from an app server) shortens our idle time below its own (gunicorn closes
  idle connections after its ``keepalive``, 2 s by default, far below
  nginx's 60 s);
* the proxy retries an idempotent request once, on a fresh connection, when
  a reused one fails before any response byte (``edge.handlers.proxy``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

from edge.cache import MicroCache
from edge.config.schema import EdgeConfig, Endpoint, ProxyHandler, Upstream
from edge.exchange import ClientGone, EdgeError, ResponseAborted
from edge.upstream.balancer import Balancer, PeerSpec
from edge.upstream.connection import UpstreamConnection
from edge.upstream.resolver import ResolveFunc, Resolver, build_specs, needs_dns

if TYPE_CHECKING:
    from edge.config.schema import Location

ErrorLog = Callable[[str, str], None]

# The idle sweeper's period: how late past its deadline an idle connection may close.
SWEEP_INTERVAL = 1.0


class ConnectionPool:
    """Idle keep-alive connections of one upstream, across its peers."""

    __slots__ = ("max_idle", "idle_timeout", "clock", "_idle", "opened", "reused")

    def __init__(
        self, max_idle: int, idle_timeout: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.clock = clock
        self._idle: list[UpstreamConnection] = []  # oldest first
        self.opened = 0  # counters for tests and stats
        self.reused = 0

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, endpoint: Endpoint) -> UpstreamConnection | None:
        """The most recently parked live connection to ``endpoint``, or None."""
        now = self.clock()
        idle = self._idle
        for index in range(len(idle) - 1, -1, -1):
            connection = idle[index]
            if connection.endpoint != endpoint:
                continue
            del idle[index]
            if connection.idle_until > now and connection.alive():
                self.reused += 1
                return connection
            connection.abort()
        return None

    def give(self, connection: UpstreamConnection, keep_alive_hint: float | None = None) -> None:
        """Park a connection whose last response ended cleanly.

        ``keep_alive_hint`` is the backend's advertised ``Keep-Alive: timeout``;
        we give up a little before it does, so we are the side that closes.
        """
        if self.max_idle <= 0 or not connection.alive():
            connection.close()
            return
        idle_for = self.idle_timeout
        if keep_alive_hint is not None:
            margin = 1.0 if keep_alive_hint > 2.0 else keep_alive_hint / 2
            idle_for = min(idle_for, keep_alive_hint - margin)
        if idle_for <= 0:
            connection.close()
            return
        connection.idle_until = self.clock() + idle_for
        self._idle.append(connection)
        while len(self._idle) > self.max_idle:
            self._idle.pop(0).close()

    def sweep(self) -> int:
        """Close idle connections past their deadline or closed by the peer; how many."""
        now = self.clock()
        keep: list[UpstreamConnection] = []
        closed = 0
        for connection in self._idle:
            if connection.idle_until > now and connection.alive():
                keep.append(connection)
            else:
                connection.abort()
                closed += 1
        self._idle = keep
        return closed

    def retain(self, endpoints: Collection[Endpoint]) -> None:
        """Close idle connections to peers no longer in the upstream."""
        keep: list[UpstreamConnection] = []
        for connection in self._idle:
            if connection.endpoint in endpoints:
                keep.append(connection)
            else:
                connection.close()
        self._idle = keep

    def resize(self, max_idle: int, idle_timeout: float) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        while len(self._idle) > max(max_idle, 0):
            self._idle.pop(0).close()

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class UpstreamGroup:
    """One named upstream in this worker: its config, peers, pool and resolved names."""

    __slots__ = ("config", "balancer", "pool", "resolved")

    def __init__(self, config: Upstream, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.resolved: dict[tuple[str, int], tuple[str, ...]] = {}
        self.balancer = Balancer(build_specs(config, self.resolved), config.balance)
        self.pool = ConnectionPool(config.keepalive, config.keepalive_timeout, clock)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def has_names(self) -> bool:
        return any(needs_dns(server.endpoint) for server in self.config.servers)

    def apply_specs(self, specs: Iterable[PeerSpec]) -> None:
        self.balancer.replace(specs)
        self.pool.retain({peer.endpoint for peer in self.balancer.peers})

    def reconfigure(self, config: Upstream) -> None:
        """A reload kept this upstream: take the new settings, keep peer state and names."""
        self.config = config
        self.balancer.balance = config.balance
        names = {
            (s.endpoint.host, s.endpoint.port) for s in config.servers if needs_dns(s.endpoint)
        }
        for key in [key for key in self.resolved if key not in names]:
            del self.resolved[key]
        self.pool.resize(config.keepalive, config.keepalive_timeout)
        self.apply_specs(build_specs(config, self.resolved))

    def close(self) -> None:
        self.pool.close()


class UpstreamRuntime:
    """Everything upstream-related one worker keeps between requests."""

    def __init__(
        self,
        config: EdgeConfig,
        error_log: ErrorLog,
        *,
        resolve: ResolveFunc | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.error_log = error_log
        self.clock = clock
        self.groups: dict[str, UpstreamGroup] = {
            upstream.name: UpstreamGroup(upstream, clock) for upstream in config.upstreams
        }
        self.resolver = Resolver(lambda: self.groups.values(), error_log, resolve, clock)
        self._caches: dict[Location, MicroCache] = {}
        self._sweeper: asyncio.Task[None] | None = None
        # Requests that outlive their client (ignore_client_abort): held here so
        # they are not garbage-collected mid-flight and can be cancelled at close.
        self._detached: set[asyncio.Task[None]] = set()
        self._started = False

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Resolve host names once, then start re-resolving and sweeping idle connections."""
        if self._started:
            return
        self._started = True
        await self.resolver.refresh_all()
        self.resolver.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        await self.resolver.stop()
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            try:
                await sweeper
            except asyncio.CancelledError:
                pass
        detached = list(self._detached)
        for task in detached:
            task.cancel()
        if detached:
            await asyncio.gather(*detached, return_exceptions=True)
        for group in self.groups.values():
            group.close()
        self._started = False

    def update(self, config: EdgeConfig) -> None:
        """SIGHUP: swap in a new config; upstreams that stay keep peers, health and pools."""
        groups: dict[str, UpstreamGroup] = {}
        for upstream in config.upstreams:
            group = self.groups.get(upstream.name)
            if group is None:
                group = UpstreamGroup(upstream, self.clock)
            else:
                group.reconfigure(upstream)
            groups[upstream.name] = group
        for name, group in self.groups.items():
            if name not in groups:
                group.close()
        self.groups = groups
        self.config = config
        locations = {
            location
            for server in config.servers
            for location in server.locations
            if isinstance(location.handler, ProxyHandler) and location.handler.cache is not None
        }
        self._caches = {loc: cache for loc, cache in self._caches.items() if loc in locations}
        if self._started:
            # New names resolve in the background; until then they connect by name.
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # called outside the loop: the resolver's next pass picks them up
            self.keep_task(loop.create_task(self.resolver.refresh_all()))

    # -- access ----------------------------------------------------------------------

    def group(self, name: str) -> UpstreamGroup:
        """The upstream called ``name`` (KeyError if the config has none)."""
        return self.groups[name]

    def balancer(self, name: str) -> Balancer:
        return self.groups[name].balancer

    def pool(self, name: str) -> ConnectionPool:
        return self.groups[name].pool

    def cache_for(self, location: Location) -> MicroCache | None:
        """The microcache of a proxy location with ``cache:``, shared by its handlers.

        Keyed by the (frozen, comparable) location, so a reload that leaves the
        location unchanged keeps its warm cache.
        """
        handler = location.handler
        if not isinstance(handler, ProxyHandler) or handler.cache is None:
            return None
        cache = self._caches.get(location)
        if cache is None:
            cache = self._caches[location] = MicroCache(handler.cache, self.clock)
        return cache

    def log(self, level: str, message: str) -> None:
        self.error_log(level, message)

    def keep_task(self, task: asyncio.Task[None]) -> None:
        """Hold a task nobody awaits any more until it finishes; its failure is logged, not lost."""
        self._detached.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._detached.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None or isinstance(error, ClientGone | ResponseAborted):
            return  # the client left (expected here), or the proxy already logged the cut
        if isinstance(error, EdgeError):
            # Nobody is awaiting this request any more, so the front will not log it.
            self.error_log(error.level, str(error))
            return
        self.error_log("error", f"background upstream task failed: {error!r}")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            for group in list(self.groups.values()):
                group.pool.sweep()
