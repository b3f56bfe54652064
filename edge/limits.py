"""Per-client request-rate and connection limits: nginx's limit_req and limit_conn, pure.

Theory of operation (``ngx_http_limit_req_module.c``).  Each key (the client
IP) has a leaky bucket measured in milli-requests: ``excess`` is how far the
client is ahead of the zone's ``rate``, and ``last`` is when it was updated.
A request computes::

    excess = prev_excess - rate * elapsed_ms / 1000 + 1000     (floored at 0)

and is rejected, without touching the bucket, when ``excess > burst * 1000``.
Otherwise the bucket keeps the new excess and the request is served after
``(excess - delay * 1000) / rate`` seconds if the excess is beyond the
``delay`` threshold (``nodelay`` makes the threshold infinite, so a burst
passes at once and only its size is limited).  A client seen for the first
time starts at excess 0.

Integer milliseconds and integer arithmetic, as nginx does them, keep the
decisions bit-for-bit comparable with nginx for the same request times.
Memory is bounded as nginx bounds its shared zone: keys live in an LRU; each
new key evicts up to two stale ones from the cold end (idle for a minute with
an empty bucket), and a full zone evicts its least recently seen key outright.

``limit_conn`` is a counter per key: a request takes a slot when it starts
and gives it back when it ends; at ``max`` the request is refused.  Like
nginx, it counts requests being processed, not idle keep-alive connections.

No clocks are read here: ``now`` is monotonic seconds from the caller.

Where the state lives is the zone's business: these classes keep it in the
worker's memory (tests, and any single process); ``edge.shared_zones``
subclasses them to keep it in shared memory that every worker of the master
sees, as nginx does.  Both run the same pure step, ``leak``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from edge.config.schema import LimitConnRule, LimitConnZone, LimitReqRule, LimitReqZone

_STALE_MS = 60_000  # a key idle this long with an empty bucket may be forgotten
# nginx stores nodelay as delay = NGX_MAX_INT_T_VALUE / 1000; any huge number does.
_NO_DELAY = 1 << 62


@dataclass(frozen=True, slots=True)
class LimitReqVerdict:
    """The outcome of ``limit_req`` for one request."""

    allowed: bool
    delay: float = 0.0  # seconds to hold the request before serving it
    excess: int = 0  # milli-requests, for nginx's "excess: 1.234" log field
    rule: LimitReqRule | None = None  # the rule that rejected or imposed the delay
    zone: str = ""

    @property
    def status(self) -> int:
        return self.rule.status if self.rule is not None else 503


def leak(bucket: tuple[int, int] | None, now_ms: int, rate_milli: int) -> tuple[int, int]:
    """``(excess, last)`` after accounting one request at ``now_ms`` on ``bucket``
    (``(excess, last)``, or None for a key seen for the first time)."""
    if bucket is None:
        return 0, now_ms
    excess, last = bucket
    elapsed = _elapsed_ms(now_ms, last)
    # nginx leaves `last` alone when no time passed, so sub-millisecond bursts
    # do not drag the leak clock forward.
    return max(0, excess - rate_milli * elapsed // 1000 + 1000), (now_ms if elapsed else last)


@dataclass(slots=True)
class _Bucket:
    excess: int  # milli-requests
    last: int  # ms


class RequestRateZone:
    """One ``limit_req_zone``: a leaky bucket per key, bounded to ``max_keys`` keys."""

    __slots__ = ("name", "rate_milli", "max_keys", "_buckets")

    def __init__(self, rate_milli: int, max_keys: int = 100_000, name: str = "") -> None:
        if rate_milli <= 0:
            raise ValueError("rate must be positive")
        self.name = name
        self.rate_milli = rate_milli
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()

    @classmethod
    def from_config(cls, zone: LimitReqZone) -> RequestRateZone:
        return cls(zone.rate_milli, zone.max_keys, zone.name)

    def __len__(self) -> int:
        return len(self._buckets)

    def check(
        self,
        key: Hashable,
        now: float,
        *,
        burst: int = 0,
        nodelay: bool = False,
        delay: int = 0,
    ) -> LimitReqVerdict:
        """Account one request for ``key`` and say whether, and after how long, to serve it."""
        allowed, excess = self.account(key, int(now * 1000), burst)
        if not allowed:
            return LimitReqVerdict(False, excess=excess, zone=self.name)
        return LimitReqVerdict(
            True,
            delay=self.delay_for(excess, _NO_DELAY if nodelay else delay),
            excess=excess,
            zone=self.name,
        )

    def account(self, key: Hashable, now_ms: int, burst: int) -> tuple[bool, int]:
        """Look up and, unless the bucket overflows ``burst``, record one request:
        ``(allowed, excess)``.  Shared zones do this under one lock acquisition."""
        excess = self.peek(key, now_ms)
        if excess is not None and excess > burst * 1000:
            return False, excess
        return True, self.commit(key, now_ms)

    def peek(self, key: Hashable, now_ms: int) -> int | None:
        """The excess this request would bring ``key`` to, or None for a new key (excess 0)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        self._buckets.move_to_end(key)  # nginx bumps the node on lookup, even before rejecting
        return leak((bucket.excess, bucket.last), now_ms, self.rate_milli)[0]

    def commit(self, key: Hashable, now_ms: int) -> int:
        """Record the request for ``key``; returns the new excess."""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._expire(now_ms)
            self._buckets[key] = _Bucket(excess=0, last=now_ms)
            return 0
        self._buckets.move_to_end(key)
        bucket.excess, bucket.last = leak((bucket.excess, bucket.last), now_ms, self.rate_milli)
        return bucket.excess

    def delay_for(self, excess: int, delay: int) -> float:
        """Seconds to hold a request whose bucket reached ``excess`` (nginx's max_delay)."""
        threshold = delay * 1000 if delay < _NO_DELAY else _NO_DELAY
        if excess <= threshold:
            return 0.0
        return ((excess - threshold) * 1000 // self.rate_milli) / 1000

    def _expire(self, now_ms: int) -> None:
        # ngx_http_limit_req_expire(ctx, 1) on every new key, or (ctx, 0) when full:
        # a full zone drops its coldest key unconditionally, then up to two stale ones.
        force = len(self._buckets) >= self.max_keys
        for _ in range(3 if force else 2):
            if not self._buckets:
                return
            key, bucket = next(iter(self._buckets.items()))
            if not force:
                idle = abs(now_ms - bucket.last)
                if idle < _STALE_MS or bucket.excess - self.rate_milli * idle // 1000 > 0:
                    return
            force = False
            del self._buckets[key]


def _elapsed_ms(now_ms: int, last_ms: int) -> int:
    elapsed = now_ms - last_ms
    if elapsed < -_STALE_MS:
        return 1  # the clock jumped back a lot: treat it as "just now", as nginx does
    return max(elapsed, 0)


def limit_requests(
    rules: Sequence[LimitReqRule],
    zones: Mapping[str, RequestRateZone],
    key: Hashable,
    now: float,
) -> LimitReqVerdict:
    """Apply a location's ``limit_req`` rules: reject if any bucket overflows (and then
    account nothing, as nginx does), else account all and wait for the longest delay."""
    now_ms = int(now * 1000)
    if len(rules) == 1:  # the usual case: one lookup (one lock for a shared zone)
        rule = rules[0]
        zone = zones[rule.zone]
        allowed, excess = zone.account(key, now_ms, rule.burst)
        if not allowed:
            return LimitReqVerdict(False, excess=excess, rule=rule, zone=zone.name)
        wait = zone.delay_for(excess, _NO_DELAY if rule.nodelay else rule.delay)
        return LimitReqVerdict(True, delay=wait, excess=excess, rule=rule, zone=zone.name)
    # Several zones: check them all, then account in all.  Each step is atomic per
    # zone, not across zones (nginx locks each zone separately too).
    for rule in rules:
        zone = zones[rule.zone]
        ahead = zone.peek(key, now_ms)
        if ahead is not None and ahead > rule.burst * 1000:
            return LimitReqVerdict(False, excess=ahead, rule=rule, zone=zone.name)
    verdict = LimitReqVerdict(True)
    for rule in rules:
        zone = zones[rule.zone]
        excess = zone.commit(key, now_ms)
        wait = zone.delay_for(excess, _NO_DELAY if rule.nodelay else rule.delay)
        if wait > verdict.delay or verdict.rule is None:
            verdict = LimitReqVerdict(True, delay=wait, excess=excess, rule=rule, zone=zone.name)
    return verdict


class ConnectionCountZone:
    """One ``limit_conn_zone``: requests in progress per key."""

    __slots__ = ("name", "max_keys", "_counts")

    def __init__(self, max_keys: int = 100_000, name: str = "") -> None:
        self.name = name
        self.max_keys = max_keys
        self._counts: dict[Hashable, int] = {}

    @classmethod
    def from_config(cls, zone: LimitConnZone) -> ConnectionCountZone:
        return cls(zone.max_keys, zone.name)

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, key: Hashable) -> int:
        return self._counts.get(key, 0)

    def acquire(self, key: Hashable, limit: int) -> bool:
        """Take a slot for ``key``; False (refuse the request) when it already has ``limit``,
        or when the zone is full of other keys (nginx: "could not allocate node")."""
        count = self._counts.get(key, 0)
        if count >= limit:
            return False
        if count == 0 and len(self._counts) >= self.max_keys:
            return False
        self._counts[key] = count + 1
        return True

    def release(self, key: Hashable) -> None:
        """Give the slot back; keys at zero are dropped, so memory tracks live requests."""
        count = self._counts.get(key, 0)
        if count <= 1:
            self._counts.pop(key, None)
        else:
            self._counts[key] = count - 1


def acquire_connections(
    rules: Sequence[LimitConnRule],
    zones: Mapping[str, ConnectionCountZone],
    key: Hashable,
) -> LimitConnRule | None:
    """Take a slot in every rule's zone; on the first refusal, give back the slots already
    taken and return the refusing rule (its ``status`` is the answer).  None means admitted:
    call ``release_connections`` with the same rules when the request ends."""
    taken: list[ConnectionCountZone] = []
    for rule in rules:
        zone = zones[rule.zone]
        if not zone.acquire(key, rule.max):
            for held in taken:
                held.release(key)
            return rule
        taken.append(zone)
    return None


def release_connections(
    rules: Sequence[LimitConnRule],
    zones: Mapping[str, ConnectionCountZone],
    key: Hashable,
) -> None:
    for rule in rules:
        zones[rule.zone].release(key)
