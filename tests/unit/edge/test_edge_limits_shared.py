"""edge.shared_zones: limit zones in shared memory, one table for all forked workers."""

from __future__ import annotations

import os
import struct

import pytest

from edge.config.load import parse_rate
from edge.config.schema import EdgeConfig, LimitConnRule, LimitConnZone, LimitReqRule, LimitReqZone
from edge.limits import RequestRateZone, acquire_connections, limit_requests, release_connections
from edge.shared_zones import (
    HEADER_SIZE,
    SharedConnectionCountZone,
    SharedRequestRateZone,
    SharedTable,
    SharedZones,
    key_bytes,
)


def rate_zone(rate: str, max_keys: int = 1000) -> SharedRequestRateZone:
    return SharedRequestRateZone(parse_rate(rate), max_keys, "z")


def keys_in_one_window(table: SharedTable, count: int) -> list[str]:
    """``count`` distinct IPs whose windows start at the same slot (collisions)."""
    found: dict[int, list[str]] = {}
    for i in range(100_000):
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        group = found.setdefault(table.slot_of(ip), [])
        group.append(ip)
        if len(group) == count:
            return group
    raise AssertionError("no collisions found")


# --- keys -------------------------------------------------------------------------------


def test_keys_are_the_addresses_themselves() -> None:
    assert key_bytes("1.2.3.4") == bytes(10) + b"\xff\xff\x01\x02\x03\x04"
    assert key_bytes("::1") == bytes(15) + b"\x01"
    assert key_bytes("::ffff:1.2.3.4") == key_bytes("1.2.3.4")
    assert len(key_bytes("unix:")) == 16 and key_bytes("unix:") != key_bytes("unix:x")
    assert key_bytes("::") != bytes(16)  # an all-zero key would read as an empty slot


# --- the table ----------------------------------------------------------------------------


def test_insert_then_update_a_bucket() -> None:
    limiter = rate_zone("1r/s")
    assert limiter.account("1.2.3.4", 0, 0) == (True, 0)
    assert len(limiter) == 1
    assert limiter.account("1.2.3.4", 500, 0) == (False, 500)
    assert limiter.account("1.2.3.4", 1000, 0) == (True, 0)
    assert limiter.account("5.6.7.8", 1000, 0) == (True, 0)
    assert len(limiter) == 2


def test_same_decisions_as_the_in_process_zone() -> None:
    shared, local = rate_zone("10r/s"), RequestRateZone(parse_rate("10r/s"), 1000, "z")
    times = [0.0, 0.01, 0.02, 0.05, 0.05, 0.3, 0.31, 0.9, 2.0, 2.0, 2.001, 2.5]
    for i, now in enumerate(times):
        key = f"192.0.2.{i % 3}"
        for kwargs in ({"burst": 2}, {"burst": 1, "nodelay": True}, {"burst": 3, "delay": 1}):
            assert shared.check(key, now, **kwargs) == local.check(key, now, **kwargs)  # type: ignore[arg-type]


def test_limit_requests_with_several_zones_over_shared_tables() -> None:
    zones: dict[str, RequestRateZone] = {"a": rate_zone("1r/s"), "b": rate_zone("1r/m")}
    rules = (LimitReqRule(zone="a", burst=5), LimitReqRule(zone="b", burst=0, nodelay=True))
    assert limit_requests(rules, zones, "ip", 0.0).allowed
    refused = limit_requests(rules, zones, "ip", 0.1)
    assert not refused.allowed and refused.zone == "z" and refused.rule == rules[1]


def test_colliding_keys_share_a_window_but_never_a_slot() -> None:
    limiter = rate_zone("1r/s", max_keys=64)
    first, second, third = keys_in_one_window(limiter.table, 3)
    assert limiter.account(first, 0, 0) == (True, 0)
    assert limiter.account(second, 0, 0) == (True, 0)  # not mistaken for `first`
    assert limiter.account(first, 100, 0) == (False, 900)
    assert limiter.account(second, 100, 0) == (False, 900)
    assert limiter.peek(third, 100) is None
    assert len(limiter) == 2


def test_a_full_window_evicts_its_least_recently_touched_key() -> None:
    table = SharedTable(64, window=4)
    limiter = SharedRequestRateZone(parse_rate("1r/s"), 64, "z", table=table)
    keys = keys_in_one_window(table, 5)
    for ms, key in enumerate(keys[:4]):
        limiter.account(key, ms, 0)
    limiter.account(keys[0], 10, 0)  # touched (even though rejected): now the newest
    limiter.account(keys[4], 20, 0)  # evicts keys[1], the least recently touched
    assert limiter.peek(keys[1], 30) is None
    assert limiter.peek(keys[0], 30) == 970
    assert limiter.peek(keys[4], 30) == 990
    assert len(limiter) == 4


def test_memory_is_bounded_by_max_keys() -> None:
    limiter = rate_zone("1r/s", max_keys=16)
    for i in range(500):
        assert limiter.account(f"10.0.{i >> 8}.{i & 255}", i, 0)[0]
    assert len(limiter) <= 16
    assert len(limiter.table._mm) == HEADER_SIZE + 16 * 48


def test_connection_counts_are_freed_at_zero_and_a_full_window_refuses() -> None:
    table = SharedTable(64, window=2)
    zone = SharedConnectionCountZone(64, "c", table=table)
    first, second, third = keys_in_one_window(table, 3)
    assert zone.acquire(first, 2) and zone.acquire(first, 2)
    assert not zone.acquire(first, 2)
    assert zone.count(first) == 2
    assert zone.acquire(second, 1)
    assert not zone.acquire(third, 1)  # no room, and a count must not be forgotten
    zone.release(second)
    assert zone.count(second) == 0 and len(zone) == 1
    assert zone.acquire(third, 1)
    zone.release("203.0.113.9")  # unknown: nothing happens
    rules = (LimitConnRule(zone="c", max=3),)
    zones = {"c": zone}
    assert acquire_connections(rules, zones, first) is None
    assert acquire_connections(rules, zones, first) == rules[0]
    release_connections(rules, zones, first)
    assert zone.count(first) == 2


# --- across processes ----------------------------------------------------------------------


def _in_child(action: object) -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            action()  # type: ignore[operator]
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_forked_processes_count_against_one_zone() -> None:
    limiter = rate_zone("1r/s")
    conns = SharedConnectionCountZone(100, "c")
    assert limiter.account("198.51.100.7", 0, 1) == (True, 0)

    def child() -> None:
        assert limiter.account("198.51.100.7", 0, 1) == (True, 1000)
        assert limiter.account("198.51.100.7", 0, 1) == (False, 2000)
        assert conns.acquire("198.51.100.7", 2)

    _in_child(child)
    assert limiter.account("198.51.100.7", 0, 1) == (False, 2000)
    assert conns.count("198.51.100.7") == 1
    assert not conns.acquire("198.51.100.7", 1)


def test_concurrent_processes_lose_no_update() -> None:
    conns = SharedConnectionCountZone(100, "c")
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                for _ in range(500):
                    assert conns.acquire("192.0.2.1", 1_000_000)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert conns.count("192.0.2.1") == 2000


def test_a_lock_left_by_a_dead_holder_is_taken_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("edge.shared_zones.STUCK_LOCK_TIMEOUT", 0.05)
    limiter = rate_zone("1r/s")

    def die_holding_the_lock() -> None:
        limiter.table._acquire()

    _in_child(die_holding_the_lock)
    assert struct.unpack_from("<q", limiter.table._mm, 0)[0] != 0
    assert limiter.account("192.0.2.1", 0, 0) == (True, 0)
    assert limiter.account("192.0.2.1", 0, 0) == (False, 1000)


# --- the master's zones ----------------------------------------------------------------------


def _config(req_keys: int = 100, conn_keys: int = 100) -> EdgeConfig:
    return EdgeConfig(
        servers=(),
        limit_req_zones=(LimitReqZone("r", parse_rate("1r/s"), req_keys),),
        limit_conn_zones=(LimitConnZone("c", conn_keys),),
    )


def test_a_reload_keeps_zones_of_the_same_name_and_size() -> None:
    first = SharedZones.build(_config())
    first.req["r"].account("192.0.2.1", 0, 0)
    first.conn["c"].acquire("192.0.2.1", 5)
    kept = SharedZones.build(_config(), first)
    assert kept.req["r"].table is first.req["r"].table
    assert kept.req["r"].peek("192.0.2.1", 0) == 1000
    assert kept.conn["c"].count("192.0.2.1") == 1
    resized = SharedZones.build(_config(req_keys=50, conn_keys=50), first)
    assert resized.req["r"].peek("192.0.2.1", 0) is None
    assert resized.conn["c"].count("192.0.2.1") == 0
