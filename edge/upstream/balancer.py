"""Choosing an upstream peer: nginx's balancers and passive health, pure.

Theory of operation.  A ``Balancer`` holds the peers of one upstream (one per
resolved address; a host name can yield several) split into primaries and
backups, each carrying nginx's per-peer state:

* ``current_weight`` / ``effective_weight`` drive smooth weighted round robin
  (``ngx_http_upstream_get_peer``): every eligible peer gains its effective
  weight, the largest wins and loses the total.  Weights 5,1,1 give
  ``a a b a c a a``.  A failure lowers ``effective_weight`` by
  ``weight / max_fails``; each later pick restores it by one, so a flapping
  peer is eased back in rather than slammed.
* ``fails`` / ``accessed`` / ``checked`` are passive health
  (``ngx_http_upstream_free_round_robin_peer``): a failure bumps ``fails`` and
  stamps both times; a peer with ``fails >= max_fails`` is skipped while
  ``now - checked <= fail_timeout``.  After that one request is let through
  (picking it stamps ``checked``); if it succeeds, ``accessed < checked`` and
  ``fails`` resets, if it fails the peer is out for another ``fail_timeout``.
* ``conns`` counts requests in flight for ``least_conn`` and ``max_conns``.

Backups are tried, with the same algorithm, only when no primary is eligible.
Like nginx, a group with exactly one primary and no backup is "single": it is
never marked failed (there is nowhere else to go, and refusing would turn a
blip into ``fail_timeout`` seconds of 502s) and gets no retries.

Every method is synchronous and takes ``now`` (monotonic seconds) from the
caller, so tests drive it with a fake clock.  The proxy calls, per attempt:
``pick`` -> ``acquire`` -> connect/relay -> ``report_success`` or
``report_failure`` -> ``release``; a retry passes the peers already tried.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from edge.config.schema import Balance, Endpoint, Upstream, UpstreamServer

# ip_hash gives up hashing after this many collisions with unusable peers and
# falls back to round robin (ngx_http_upstream_get_ip_hash_peer).
_IP_HASH_MAX_TRIES = 20
_UNIX_PSEUDO_ADDR = b"\x00\x00\x00"


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """A peer to be: the server line it comes from (weight, max_fails ... as configured)
    and one address that line resolved to."""

    server: UpstreamServer
    endpoint: Endpoint

    @classmethod
    def from_server(cls, server: UpstreamServer, endpoint: Endpoint | None = None) -> PeerSpec:
        """The spec for ``server`` at ``endpoint`` (one of its resolved addresses; by
        default the configured one)."""
        return cls(server, endpoint or server.endpoint)


@dataclass(eq=False, slots=True)
class Peer:
    """One upstream address with its balancing and health state.  Compared by identity.
    Its settings are its server line's (``config``), read through, never copied."""

    endpoint: Endpoint
    config: UpstreamServer
    current_weight: int = 0
    effective_weight: int = 0
    conns: int = 0
    fails: int = 0
    accessed: float = 0.0  # when it last failed
    checked: float = 0.0  # when it last failed or was last probed after fail_timeout

    @classmethod
    def from_spec(cls, spec: PeerSpec) -> Peer:
        return cls(spec.endpoint, spec.server, effective_weight=spec.server.weight)

    def update(self, spec: PeerSpec) -> None:
        """Take new settings from a re-resolved or reloaded spec, keeping health state."""
        if spec.server.weight != self.config.weight:
            self.effective_weight = min(self.effective_weight, spec.server.weight)
        self.config = spec.server

    @property
    def weight(self) -> int:
        return self.config.weight

    @property
    def max_fails(self) -> int:
        return self.config.max_fails

    @property
    def fail_timeout(self) -> float:
        return self.config.fail_timeout

    @property
    def backup(self) -> bool:
        return self.config.backup

    @property
    def down(self) -> bool:
        return self.config.down

    @property
    def max_conns(self) -> int:
        return self.config.max_conns

    @property
    def server(self) -> str:
        """The configured address ("appserver:3031"), for log lines."""
        return str(self.config.endpoint)

    def failed_out(self, now: float) -> bool:
        """Taken out by passive health: ``max_fails`` reached and ``fail_timeout`` not over."""
        config = self.config
        return (
            config.max_fails > 0
            and self.fails >= config.max_fails
            and now - self.checked <= config.fail_timeout
        )

    def usable(self, now: float) -> bool:
        config = self.config
        if config.down or self.failed_out(now):
            return False
        return not (config.max_conns and self.conns >= config.max_conns)

    def __repr__(self) -> str:
        return (
            f"Peer({self.endpoint}, weight={self.weight}, fails={self.fails}, conns={self.conns})"
        )


def peer_specs(upstream: Upstream) -> list[PeerSpec]:
    """Specs for an upstream without DNS: one peer per configured server line."""
    return [PeerSpec.from_server(server) for server in upstream.servers]


def ip_hash_key(client_ip: str | None) -> bytes:
    """The bytes nginx hashes: IPv4's first three octets, IPv6's whole address.

    Unix-socket clients (or anything unparsable) share nginx's pseudo-address
    of three zero bytes, so they all land on one peer, as in nginx.
    """
    if not client_ip:
        return _UNIX_PSEUDO_ADDR
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return _UNIX_PSEUDO_ADDR
    if address.version == 4:
        return address.packed[:3]
    return address.packed


class Balancer:
    """The peers of one upstream and the method that picks among them."""

    __slots__ = ("balance", "_primaries", "_backups", "_total_weight")

    def __init__(self, specs: Iterable[PeerSpec], balance: Balance = "round_robin") -> None:
        self.balance: Balance = balance
        self._primaries: tuple[Peer, ...] = ()
        self._backups: tuple[Peer, ...] = ()
        self._total_weight = 0
        self.replace(specs)

    @classmethod
    def for_upstream(cls, upstream: Upstream) -> Balancer:
        return cls(peer_specs(upstream), upstream.balance)

    # -- the peer set ---------------------------------------------------------

    @property
    def peers(self) -> tuple[Peer, ...]:
        """Primaries then backups, in configuration order."""
        return self._primaries + self._backups

    @property
    def single(self) -> bool:
        """nginx's ``peers->single``: one primary, no backups; no failure accounting, no retries."""
        return len(self._primaries) == 1 and not self._backups

    def replace(self, specs: Iterable[PeerSpec]) -> None:
        """Swap in a new peer set (DNS re-resolution, reload), keeping the state of peers
        whose address stays, so a scale-up does not forget which replica was failing."""
        existing = {(peer.endpoint, peer.config.backup): peer for peer in self.peers}
        primaries: list[Peer] = []
        backups: list[Peer] = []
        seen: set[tuple[Endpoint, bool]] = set()
        for spec in specs:
            key = (spec.endpoint, spec.server.backup)
            if key in seen:
                continue  # two server lines resolving to one address: one peer, as nginx
            seen.add(key)
            peer = existing.get(key)
            if peer is None:
                peer = Peer.from_spec(spec)
            else:
                peer.update(spec)
            (backups if spec.server.backup else primaries).append(peer)
        self._primaries = tuple(primaries)
        self._backups = tuple(backups)
        # ip_hash maps a hash onto configured weights of all primaries, down or not,
        # so marking one down does not reshuffle every client (ngx_http_upstream_init_round_robin).
        self._total_weight = sum(peer.config.weight for peer in primaries)

    # -- choosing -------------------------------------------------------------

    def pick(
        self, now: float, client_ip: str | None = None, tried: Collection[Peer] = ()
    ) -> Peer | None:
        """The peer for the next attempt, or None when every peer is down, failed out,
        at ``max_conns`` or already in ``tried`` (the caller answers 502)."""
        if not self._primaries:
            return None
        if self.single:
            only = self._primaries[0]
            if (
                only in tried
                or only.config.down
                or (only.config.max_conns and only.conns >= only.config.max_conns)
            ):
                return None
            return only
        if self.balance == "ip_hash" and len(self._primaries) >= 2:
            hashed = self._pick_ip_hash(now, ip_hash_key(client_ip), tried)
            if hashed is not None:
                return hashed
            return self._pick_group(now, tried, _pick_round_robin)
        chooser = _pick_least_conn if self.balance == "least_conn" else _pick_round_robin
        return self._pick_group(now, tried, chooser)

    def _pick_group(
        self,
        now: float,
        tried: Collection[Peer],
        chooser: Callable[[Sequence[Peer], float, Collection[Peer]], Peer | None],
    ) -> Peer | None:
        peer = chooser(self._primaries, now, tried)
        if peer is None and self._backups:
            peer = chooser(self._backups, now, tried)
        if peer is not None and now - peer.checked > peer.config.fail_timeout:
            peer.checked = now
        return peer

    def _pick_ip_hash(self, now: float, key: bytes, tried: Collection[Peer]) -> Peer | None:
        # ngx_http_upstream_get_ip_hash_peer.  nginx keeps the running hash in the
        # request between retries; replaying from 89 with the tried set skips the
        # same peers in the same order, so the sequence is identical.
        hash_value = 89
        for _ in range(_IP_HASH_MAX_TRIES + 1):
            for octet in key:
                hash_value = (hash_value * 113 + octet) % 6271
            weight = hash_value % self._total_weight
            for peer in self._primaries:
                if weight < peer.config.weight:
                    break
                weight -= peer.config.weight
            if peer not in tried and peer.usable(now):
                if now - peer.checked > peer.config.fail_timeout:
                    peer.checked = now
                return peer
        return None

    # -- accounting -----------------------------------------------------------

    def acquire(self, peer: Peer) -> None:
        """A request to ``peer`` starts (least_conn and max_conns count these)."""
        peer.conns += 1

    def release(self, peer: Peer) -> None:
        """That request finished, however it ended."""
        if peer.conns > 0:
            peer.conns -= 1

    def report_failure(self, peer: Peer, now: float) -> bool:
        """A connect error, timeout or bad response from ``peer``.  True when this failure
        takes it out for ``fail_timeout`` (nginx logs "upstream server temporarily disabled")."""
        if self.single:
            return False
        peer.fails += 1
        peer.accessed = now
        peer.checked = now
        if peer.config.max_fails:
            peer.effective_weight -= peer.config.weight // peer.config.max_fails
        if peer.effective_weight < 0:
            peer.effective_weight = 0
        return bool(peer.config.max_fails) and peer.fails >= peer.config.max_fails

    def report_success(self, peer: Peer) -> None:
        """``peer`` answered; if that was the probe after ``fail_timeout``, it is healthy again."""
        if peer.accessed < peer.checked:
            peer.fails = 0


def _pick_round_robin(peers: Sequence[Peer], now: float, tried: Collection[Peer]) -> Peer | None:
    """Smooth weighted round robin, exactly ``ngx_http_upstream_get_peer``."""
    best: Peer | None = None
    total = 0
    for peer in peers:
        if peer in tried or not peer.usable(now):
            continue
        peer.current_weight += peer.effective_weight
        total += peer.effective_weight
        if peer.effective_weight < peer.config.weight:
            peer.effective_weight += 1
        if best is None or peer.current_weight > best.current_weight:
            best = peer
    if best is not None:
        best.current_weight -= total
    return best


def _pick_least_conn(peers: Sequence[Peer], now: float, tried: Collection[Peer]) -> Peer | None:
    """Fewest in-flight requests per unit of weight; ties broken by smooth weighted
    round robin among the tied peers (``ngx_http_upstream_get_least_conn_peer``)."""
    best: Peer | None = None
    best_index = 0
    many = False
    for index, peer in enumerate(peers):
        if peer in tried or not peer.usable(now):
            continue
        if best is None or peer.conns * best.config.weight < best.conns * peer.config.weight:
            best, best_index, many = peer, index, False
        elif peer.conns * best.config.weight == best.conns * peer.config.weight:
            many = True
    if best is None:
        return None
    total = 0
    if many:
        for peer in peers[best_index:]:
            if peer in tried or not peer.usable(now):
                continue
            if peer.conns * best.config.weight != best.conns * peer.config.weight:
                continue
            peer.current_weight += peer.effective_weight
            total += peer.effective_weight
            if peer.effective_weight < peer.config.weight:
                peer.effective_weight += 1
            if peer.current_weight > best.current_weight:
                best = peer
    best.current_weight -= total
    return best
