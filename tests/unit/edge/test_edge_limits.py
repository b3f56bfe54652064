"""edge.limits: nginx's limit_req leaky bucket and limit_conn counters, on a fake clock."""

from __future__ import annotations

import pytest

from edge.config.load import parse_rate
from edge.config.schema import LimitConnRule, LimitConnZone, LimitReqRule, LimitReqZone
from edge.limits import (
    ConnectionCountZone,
    RequestRateZone,
    acquire_connections,
    limit_requests,
    release_connections,
)


def zone(rate: str, max_keys: int = 1000) -> RequestRateZone:
    return RequestRateZone(parse_rate(rate), max_keys)


# --- limit_req ---------------------------------------------------------------------------


def test_first_request_always_passes_even_with_no_burst() -> None:
    verdict = zone("1r/s").check("1.2.3.4", 0.0)
    assert verdict.allowed and verdict.delay == 0.0 and verdict.excess == 0


def test_rate_without_burst() -> None:
    limiter = zone("1r/s")
    assert limiter.check("ip", 0.0).allowed
    rejected = limiter.check("ip", 0.5)
    assert not rejected.allowed and rejected.excess == 500  # 0 - 1000*500/1000 + 1000
    assert rejected.status == 503
    # A rejected request leaves the bucket alone, so one second after the
    # last accepted request the client is welcome again.
    assert limiter.check("ip", 1.0).allowed


def test_burst_with_nodelay_passes_burst_plus_one_at_once() -> None:
    limiter = zone("10r/s")
    verdicts = [limiter.check("ip", 5.0, burst=5, nodelay=True) for _ in range(7)]
    assert [v.allowed for v in verdicts] == [True] * 6 + [False]
    assert all(v.delay == 0.0 for v in verdicts[:6])
    assert [v.excess for v in verdicts] == [0, 1000, 2000, 3000, 4000, 5000, 6000]


def test_bucket_leaks_at_the_rate() -> None:
    limiter = zone("10r/s")
    for _ in range(6):
        assert limiter.check("ip", 0.0, burst=5, nodelay=True).allowed
    assert not limiter.check("ip", 0.0, burst=5, nodelay=True).allowed
    # 100 ms leaks exactly one request (rate 10000 milli-req/s * 100 ms / 1000).
    after = limiter.check("ip", 0.1, burst=5, nodelay=True)
    assert after.allowed and after.excess == 5000
    assert not limiter.check("ip", 0.1, burst=5, nodelay=True).allowed


def test_excess_never_goes_negative() -> None:
    limiter = zone("10r/s")
    limiter.check("ip", 0.0)
    assert limiter.check("ip", 100.0).excess == 0


def test_delay_without_nodelay() -> None:
    limiter = zone("10r/s")
    delays = [limiter.check("ip", 0.0, burst=3).delay for _ in range(4)]
    # nginx: (excess - delay*1000) * 1000 / rate milliseconds.
    assert delays == [0.0, 0.1, 0.2, 0.3]
    assert not limiter.check("ip", 0.0, burst=3).allowed


def test_delay_threshold() -> None:
    limiter = zone("10r/s")
    delays = [limiter.check("ip", 0.0, burst=5, delay=2).delay for _ in range(6)]
    assert delays == [0.0, 0.0, 0.0, 0.1, 0.2, 0.3]


def test_per_minute_rate() -> None:
    limiter = zone("30r/m")  # 500 milli-requests per second: one every 2 s
    assert limiter.check("ip", 0.0).allowed
    assert not limiter.check("ip", 1.0).allowed
    assert limiter.check("ip", 2.0).allowed


def test_keys_are_independent() -> None:
    limiter = zone("1r/s")
    assert limiter.check("a", 0.0).allowed
    assert not limiter.check("a", 0.0).allowed
    assert limiter.check("b", 0.0).allowed


def test_same_millisecond_does_not_move_the_leak_clock() -> None:
    # nginx only stamps `last` when time passed; sub-ms bursts must not lose leak time.
    limiter = zone("1r/s")
    limiter.check("ip", 0.0, burst=10, nodelay=True)
    limiter.check("ip", 0.9999, burst=10, nodelay=True)  # 999 ms: excess 1000-999 = 1
    verdict = limiter.check("ip", 0.9999, burst=10, nodelay=True)
    assert verdict.excess == 1001


def test_clock_going_backwards_is_treated_as_no_time() -> None:
    limiter = zone("1r/s")
    limiter.check("ip", 10.0, burst=5, nodelay=True)
    assert limiter.check("ip", 9.0, burst=5, nodelay=True).excess == 1000


def test_memory_is_bounded_by_max_keys() -> None:
    limiter = zone("1r/s", max_keys=3)
    for i in range(10):
        limiter.check(f"10.0.0.{i}", 0.0)
        assert len(limiter) <= 3
    # The least recently seen keys went first; the newest are remembered.
    assert not limiter.check("10.0.0.9", 0.0).allowed
    assert limiter.check("10.0.0.0", 0.0).allowed


def test_lookup_refreshes_lru_position() -> None:
    limiter = zone("1r/s", max_keys=2)
    limiter.check("a", 0.0)
    limiter.check("b", 0.0)
    limiter.check("a", 0.0)  # rejected, but recently seen
    limiter.check("c", 0.0)  # evicts b, not a
    assert not limiter.check("a", 0.0).allowed
    assert limiter.check("b", 0.0).allowed


def test_stale_keys_expire_when_new_keys_arrive() -> None:
    limiter = zone("10r/s")
    limiter.check("old1", 0.0)
    limiter.check("old2", 0.0)
    limiter.check("recent", 59.0)
    limiter.check("new", 61.0)  # old1 and old2 idle > 60 s with empty buckets
    assert len(limiter) == 2


def test_busy_keys_are_not_expired_early() -> None:
    limiter = RequestRateZone(1, 1000)  # 0.001 r/s: a bucket takes ages to drain
    limiter.check("slow", 0.0)
    limiter.check("slow", 0.0, burst=5, nodelay=True)
    limiter.check("new", 61.0)
    assert len(limiter) == 2


def test_zero_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        RequestRateZone(0)


def test_limit_requests_rejects_without_accounting_any_zone() -> None:
    zones = {
        "strict": RequestRateZone.from_config(LimitReqZone("strict", parse_rate("1r/s"))),
        "loose": RequestRateZone.from_config(LimitReqZone("loose", parse_rate("100r/s"))),
    }
    rules = [LimitReqRule("loose", burst=10, nodelay=True), LimitReqRule("strict", status=429)]
    assert limit_requests(rules, zones, "ip", 0.0).allowed
    loose_before = zones["loose"].peek("ip", 0)
    verdict = limit_requests(rules, zones, "ip", 0.0)
    assert not verdict.allowed
    assert verdict.status == 429 and verdict.zone == "strict"
    assert zones["loose"].peek("ip", 0) == loose_before


def test_limit_requests_takes_the_longest_delay() -> None:
    zones = {"a": RequestRateZone(10_000, name="a"), "b": RequestRateZone(2_000, name="b")}
    rules = [LimitReqRule("a", burst=10), LimitReqRule("b", burst=10)]
    limit_requests(rules, zones, "ip", 0.0)
    verdict = limit_requests(rules, zones, "ip", 0.0)
    assert verdict.allowed
    assert verdict.delay == 0.5 and verdict.zone == "b"  # 1000 * 1000 / 2000 ms


def test_limit_requests_with_no_rules_allows() -> None:
    verdict = limit_requests([], {}, "ip", 0.0)
    assert verdict.allowed and verdict.delay == 0.0


# --- limit_conn --------------------------------------------------------------------------


def test_connection_counts() -> None:
    conns = ConnectionCountZone.from_config(LimitConnZone("c"))
    assert conns.acquire("ip", 2)
    assert conns.acquire("ip", 2)
    assert not conns.acquire("ip", 2)
    assert conns.acquire("other", 2)
    conns.release("ip")
    assert conns.count("ip") == 1
    assert conns.acquire("ip", 2)
    conns.release("ip")
    conns.release("ip")
    conns.release("other")
    assert len(conns) == 0  # counters at zero are dropped
    conns.release("ip")  # an extra release is harmless
    assert conns.count("ip") == 0


def test_connection_zone_full_refuses_new_keys_only() -> None:
    conns = ConnectionCountZone(max_keys=2)
    assert conns.acquire("a", 5)
    assert conns.acquire("b", 5)
    assert not conns.acquire("c", 5)
    assert conns.acquire("a", 5)


def test_acquire_connections_rolls_back_on_refusal() -> None:
    zones = {"wide": ConnectionCountZone(), "narrow": ConnectionCountZone()}
    rules = [LimitConnRule("wide", max=10), LimitConnRule("narrow", max=1, status=429)]
    assert acquire_connections(rules, zones, "ip") is None
    refused = acquire_connections(rules, zones, "ip")
    assert refused is not None and refused.status == 429
    assert zones["wide"].count("ip") == 1  # the second attempt's slot was given back
    release_connections(rules, zones, "ip")
    assert len(zones["wide"]) == 0 and len(zones["narrow"]) == 0
