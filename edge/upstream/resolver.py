"""Re-resolving upstream host names while running, so ``--scale`` needs no restart.

Theory of operation
-------------------
nginx resolves ``server appserver:3031`` once, at start, and keeps those
addresses until it is restarted; in Docker that means a scaled-up service
gets no traffic and a recreated container gets 502s (DESIGN pain point #10).
Here each server line with a host name (not a literal IP, not a unix
socket) is looked up again every ``Upstream.resolve`` seconds.  Every
address of the answer is a peer (``appserver`` with four replicas -> four
A records -> four peers), carrying the settings of its server line.

A new answer only changes the peer set when the addresses differ; then the
balancer's ``replace`` swaps it in, keeping the health and weight state of
peers that stay, and the pool closes idle connections to peers that left.
Each change is logged (added and removed peers).  A failed lookup keeps the
last good addresses: a DNS blip must not empty an upstream.  It is logged
once per distinct error, and again when the name resolves again.

Until a name has resolved once, its server line stays a single peer whose
endpoint is the name itself, so a connect still works (the event loop
resolves it) and a name that never resolves produces an honest
``connect() to appserver:3031 failed (-2: Name or service not known)``.

The lookup function is injected (``ResolveFunc``); the default is the
event loop's ``getaddrinfo``, which runs in the default executor.  The
resolver keeps no peer state of its own: addresses live on the group.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from edge.config.schema import Endpoint, Upstream
from edge.upstream.balancer import PeerSpec

if TYPE_CHECKING:
    from edge.upstream.pool import UpstreamGroup

ResolveFunc = Callable[[str, int], Awaitable[Sequence[str]]]
ErrorLog = Callable[[str, str], None]

# getaddrinfo runs in a thread that cannot be cancelled; bound how long we wait for it.
RESOLVE_TIMEOUT = 10.0
# The loop wakes at least this often to see which upstreams are due.
_MAX_TICK = 1.0


async def getaddrinfo_resolve(host: str, port: int) -> list[str]:
    """Every address of ``host`` for a TCP connection, in resolver order, without repeats."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def needs_dns(endpoint: Endpoint) -> bool:
    """True for ``name:port``; False for a literal IP or a unix socket."""
    if endpoint.is_unix:
        return False
    try:
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        return True
    return False


def build_specs(
    upstream: Upstream, resolved: Mapping[tuple[str, int], Sequence[str]]
) -> list[PeerSpec]:
    """The upstream's peers: one per resolved address of each server line."""
    specs: list[PeerSpec] = []
    for server in upstream.servers:
        endpoint = server.endpoint
        addresses = resolved.get((endpoint.host, endpoint.port)) if needs_dns(endpoint) else None
        if not addresses:
            specs.append(PeerSpec(server, endpoint))
            continue
        for address in addresses:
            specs.append(PeerSpec(server, Endpoint(host=address, port=endpoint.port)))
    return specs


def _describe(error: BaseException) -> str:
    number = getattr(error, "errno", None)
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return f"{number}: {text}" if number is not None else text


class Resolver:
    """Periodically re-resolves the host names of a set of upstream groups."""

    def __init__(
        self,
        groups: Callable[[], Iterable[UpstreamGroup]],
        error_log: ErrorLog,
        resolve: ResolveFunc | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._groups = groups
        self._log = error_log
        self._resolve: ResolveFunc = resolve or getaddrinfo_resolve
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._last_run: dict[str, float] = {}
        self._errors: dict[tuple[str, int], str] = {}  # name -> last error logged

    # -- one pass ----------------------------------------------------------------

    async def refresh(self, group: UpstreamGroup) -> bool:
        """Resolve every name of ``group`` now; True when its peer set changed."""
        names = sorted(
            {
                (server.endpoint.host, server.endpoint.port)
                for server in group.config.servers
                if needs_dns(server.endpoint)
            }
        )
        if not names:
            return False
        answers = await asyncio.gather(*(self._lookup(host, port) for host, port in names))
        changed = False
        for (host, port), addresses in zip(names, answers, strict=True):
            if addresses is None:
                continue
            previous = group.resolved.get((host, port))
            if previous is not None and tuple(previous) == tuple(addresses):
                continue
            group.resolved[(host, port)] = tuple(addresses)
            changed = True
            before = set(previous or ())
            added = [a for a in addresses if a not in before]
            removed = [a for a in (previous or ()) if a not in set(addresses)]
            listing = ", ".join(str(Endpoint(host=a, port=port)) for a in addresses)
            detail = []
            if previous is not None and added:
                detail.append("added " + ", ".join(str(Endpoint(host=a, port=port)) for a in added))
            if removed:
                detail.append(
                    "removed " + ", ".join(str(Endpoint(host=a, port=port)) for a in removed)
                )
            suffix = f" ({'; '.join(detail)})" if detail else ""
            self._log(
                "notice",
                f'upstream "{group.name}": {host}:{port} resolves to {listing}{suffix}',
            )
        if changed:
            group.apply_specs(build_specs(group.config, group.resolved))
        return changed

    async def refresh_all(self) -> None:
        """Resolve every group's names once (at start, and after a reload)."""
        groups = list(self._groups())
        await asyncio.gather(*(self.refresh(group) for group in groups))
        now = self._clock()
        for group in groups:
            self._last_run[group.name] = now

    async def _lookup(self, host: str, port: int) -> list[str] | None:
        key = (host, port)
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                addresses = list(await self._resolve(host, port))
            if not addresses:
                raise OSError("no address in the answer")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any resolver failure keeps the old peers
            message = _describe(exc) if not isinstance(exc, TimeoutError) else "timed out"
            if self._errors.get(key) != message:
                self._errors[key] = message
                self._log(
                    "warn",
                    f"could not resolve {host}:{port} ({message}); keeping its current peers",
                )
            return None
        if key in self._errors:
            del self._errors[key]
            self._log("notice", f"{host}:{port} resolves again")
        return addresses

    # -- the loop ------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            groups = [g for g in self._groups() if g.config.resolve > 0 and g.has_names]
            tick = min([_MAX_TICK, *(g.config.resolve for g in groups)])
            await asyncio.sleep(tick)
            now = self._clock()
            due = [g for g in groups if now - self._last_run.get(g.name, 0.0) >= g.config.resolve]
            for group in due:
                self._last_run[group.name] = now
            if due:
                # One group failing (or raising something unexpected) must not stop the others.
                results = await asyncio.gather(
                    *(self.refresh(g) for g in due), return_exceptions=True
                )
                for group, result in zip(due, results, strict=True):
                    if isinstance(result, BaseException) and not isinstance(
                        result, asyncio.CancelledError
                    ):
                        self._log(
                            "error", f'upstream "{group.name}": re-resolving failed: {result!r}'
                        )
