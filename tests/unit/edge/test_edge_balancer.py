"""edge.upstream.balancer: nginx's round robin, least_conn, ip_hash and passive health."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from edge.config.load import build_config
from edge.config.schema import Endpoint, UpstreamServer
from edge.upstream.balancer import Balancer, Peer, PeerSpec, ip_hash_key


def spec(name: str, **kwargs: object) -> PeerSpec:
    return PeerSpec.from_server(UpstreamServer(Endpoint(name, 3031), **kwargs))  # type: ignore[arg-type]


def names(peers: list[Peer | None]) -> str:
    return "".join(p.endpoint.host if p is not None else "-" for p in peers)


def picks(balancer: Balancer, count: int, now: float = 100.0, client_ip: str | None = None) -> str:
    return names([balancer.pick(now, client_ip) for _ in range(count)])


# --- smooth weighted round robin ------------------------------------------------------------


def test_nginx_sequence_for_weights_5_1_1() -> None:
    balancer = Balancer([spec("a", weight=5), spec("b"), spec("c")])
    assert picks(balancer, 7) == "aabacaa"
    assert picks(balancer, 7) == "aabacaa"  # the state returns to zero after a cycle


def test_equal_weights_rotate() -> None:
    assert picks(Balancer([spec("a"), spec("b"), spec("c")]), 6) == "abcabc"


@pytest.mark.parametrize("weights", [(1, 1), (3, 1), (5, 1, 1), (2, 3, 5), (10, 1, 4, 7)])
def test_weights_are_honored_over_10000_picks(weights: tuple[int, ...]) -> None:
    labels = "abcdefgh"[: len(weights)]
    balancer = Balancer([spec(label, weight=w) for label, w in zip(labels, weights, strict=True)])
    counts = Counter(picks(balancer, 10_000))
    total = sum(weights)
    for label, weight in zip(labels, weights, strict=True):
        # Smooth WRR is exact per cycle: at most one cycle of drift.
        assert abs(counts[label] - 10_000 * weight / total) <= total


def test_down_peers_are_skipped() -> None:
    balancer = Balancer([spec("a"), spec("b", down=True), spec("c")])
    assert picks(balancer, 4) == "acac"


def test_all_down_is_none() -> None:
    balancer = Balancer([spec("a", down=True), spec("b", down=True)])
    assert balancer.pick(0.0) is None


def test_empty_balancer_is_none() -> None:
    assert Balancer([]).pick(0.0) is None


def test_tried_peers_are_skipped_for_retries() -> None:
    balancer = Balancer([spec("a"), spec("b"), spec("c")])
    first = balancer.pick(0.0)
    assert first is not None
    second = balancer.pick(0.0, tried={first})
    assert second is not None and second is not first
    third = balancer.pick(0.0, tried={first, second})
    assert third is not None and third not in (first, second)
    assert balancer.pick(0.0, tried={first, second, third}) is None


def test_max_conns() -> None:
    balancer = Balancer([spec("a", max_conns=1), spec("b", max_conns=1)])
    a = balancer.pick(0.0)
    assert a is not None
    balancer.acquire(a)
    b = balancer.pick(0.0)
    assert b is not None and b is not a
    balancer.acquire(b)
    assert balancer.pick(0.0) is None
    balancer.release(a)
    assert balancer.pick(0.0) is a


# --- backup ---------------------------------------------------------------------------------


def test_backup_only_when_all_primaries_are_unavailable() -> None:
    balancer = Balancer([spec("a"), spec("b"), spec("z", backup=True)])
    assert "z" not in picks(balancer, 100)
    a, b, z = balancer.peers
    assert balancer.report_failure(a, 10.0)
    assert picks(balancer, 3, now=10.0) == "bbb"
    assert balancer.report_failure(b, 10.0)
    assert picks(balancer, 3, now=10.0) == "zzz"
    # Backups also fill in for peers already tried by this request.
    fresh = Balancer([spec("a"), spec("z", backup=True)])
    a2 = fresh.peers[0]
    assert fresh.pick(0.0, tried={a2}) is fresh.peers[1]


def test_backup_of_a_single_primary_disables_single_mode() -> None:
    balancer = Balancer([spec("a"), spec("z", backup=True)])
    assert not balancer.single
    a = balancer.peers[0]
    assert balancer.report_failure(a, 0.0)
    assert picks(balancer, 2, now=1.0) == "zz"


def test_backups_balance_among_themselves() -> None:
    balancer = Balancer(
        [spec("a", down=True), spec("y", backup=True), spec("z", backup=True, weight=2)]
    )
    assert picks(balancer, 3) == "zyz"


# --- passive health: max_fails / fail_timeout -----------------------------------------------


def test_max_fails_within_fail_timeout_takes_a_peer_out() -> None:
    balancer = Balancer([spec("a", max_fails=2, fail_timeout=10.0), spec("b")])
    a = balancer.peers[0]
    assert not balancer.report_failure(a, 0.0)  # 1 of 2: still in
    assert "a" in picks(balancer, 4, now=1.0)
    assert balancer.report_failure(a, 2.0)  # 2 of 2: out
    assert picks(balancer, 5, now=2.0) == "bbbbb"
    assert picks(balancer, 5, now=12.0) == "bbbbb"  # exactly fail_timeout later: still out


def test_after_fail_timeout_one_probe_then_recovery_or_another_timeout() -> None:
    balancer = Balancer([spec("a", fail_timeout=10.0), spec("b")])
    a, b = balancer.peers
    balancer.report_failure(a, 0.0)
    assert picks(balancer, 4, now=5.0) == "bbbb"
    # 10 s later a is eligible again; picking it stamps `checked` (the probe).
    probe = [balancer.pick(10.5) for _ in range(4)]
    assert a in probe
    # The probe fails: out for another fail_timeout from now.
    balancer.report_failure(a, 11.0)
    assert picks(balancer, 4, now=20.0) == "bbbb"
    # Next probe succeeds: the failure count resets and a is back for good.
    assert a in [balancer.pick(21.5) for _ in range(4)]
    balancer.report_success(a)
    assert a.fails == 0
    assert "a" in picks(balancer, 4, now=22.0)


def test_success_before_a_probe_does_not_reset_failures() -> None:
    # nginx only forgives failures once a request picked after fail_timeout succeeds.
    balancer = Balancer([spec("a", max_fails=3, fail_timeout=10.0), spec("b")])
    a = balancer.peers[0]
    balancer.report_failure(a, 0.0)
    balancer.report_success(a)
    assert a.fails == 1
    balancer.report_failure(a, 1.0)
    balancer.report_failure(a, 2.0)
    assert a.failed_out(3.0)


def test_max_fails_zero_disables_accounting() -> None:
    balancer = Balancer([spec("a", max_fails=0), spec("b")])
    a = balancer.peers[0]
    for t in range(10):
        assert not balancer.report_failure(a, float(t))
    assert "a" in picks(balancer, 2, now=10.0)


def test_failure_lowers_effective_weight_then_it_recovers() -> None:
    balancer = Balancer([spec("a", weight=4, max_fails=2), spec("b", weight=4)])
    a = balancer.peers[0]
    balancer.report_failure(a, 0.0)
    assert a.effective_weight == 2  # weight / max_fails taken off
    balancer.pick(1.0)
    assert a.effective_weight == 3  # and one given back per pick
    balancer.pick(1.0)
    balancer.pick(1.0)
    assert a.effective_weight == 4


def test_single_peer_is_never_marked_failed() -> None:
    # nginx's peers->single: one server, nowhere else to go, no failure accounting.
    balancer = Balancer([spec("a")])
    assert balancer.single
    a = balancer.peers[0]
    for t in range(5):
        assert not balancer.report_failure(a, float(t))
    assert balancer.pick(5.0) is a
    assert balancer.pick(5.0, tried={a}) is None  # and no retry on the same peer


def test_all_primaries_failed_without_backup_is_none() -> None:
    balancer = Balancer([spec("a"), spec("b")])
    a, b = balancer.peers
    balancer.report_failure(a, 0.0)
    balancer.report_failure(b, 0.0)
    assert balancer.pick(1.0) is None
    assert balancer.pick(10.5) is not None


# --- least_conn -----------------------------------------------------------------------------


def test_least_conn_prefers_fewest_in_flight() -> None:
    balancer = Balancer([spec("a"), spec("b"), spec("c")], "least_conn")
    a, b, c = balancer.peers
    balancer.acquire(a)
    balancer.acquire(a)
    balancer.acquire(b)
    assert balancer.pick(0.0) is c
    balancer.acquire(c)
    assert balancer.pick(0.0) in (b, c)
    balancer.acquire(c)
    assert balancer.pick(0.0) is b


def test_least_conn_scales_by_weight() -> None:
    balancer = Balancer([spec("a", weight=3), spec("b")], "least_conn")
    a, b = balancer.peers
    for _ in range(2):
        balancer.acquire(a)
    balancer.acquire(b)
    # a: 2/3 per weight, b: 1/1 -> a has spare capacity.
    assert balancer.pick(0.0) is a


def test_least_conn_ties_use_weighted_round_robin() -> None:
    balancer = Balancer([spec("a", weight=5), spec("b"), spec("c")], "least_conn")
    assert picks(balancer, 7) == "aabacaa"


def test_least_conn_spreads_concurrent_load() -> None:
    balancer = Balancer([spec("a"), spec("b"), spec("c")], "least_conn")
    held = []
    for _ in range(9):
        peer = balancer.pick(0.0)
        assert peer is not None
        balancer.acquire(peer)
        held.append(peer)
    assert Counter(p.endpoint.host for p in held) == {"a": 3, "b": 3, "c": 3}
    for peer in held:
        balancer.release(peer)
    assert all(p.conns == 0 for p in balancer.peers)


def test_least_conn_falls_back_to_backup() -> None:
    balancer = Balancer(
        [spec("a", down=True), spec("b", down=True), spec("z", backup=True)], "least_conn"
    )
    assert picks(balancer, 2) == "zz"


# --- ip_hash --------------------------------------------------------------------------------


def nginx_ip_hash(address: bytes, weights: list[int]) -> int:
    """The index nginx's first ip_hash iteration picks (written out independently)."""
    value = 89
    for byte in address:
        value = (value * 113 + byte) % 6271
    w = value % sum(weights)
    index = 0
    while w >= weights[index]:
        w -= weights[index]
        index += 1
    return index


def test_ip_hash_key() -> None:
    assert ip_hash_key("192.168.1.77") == bytes([192, 168, 1])
    assert ip_hash_key("2001:db8::1") == bytes.fromhex("20010db8000000000000000000000001")
    assert ip_hash_key(None) == b"\x00\x00\x00"
    assert ip_hash_key("unix:") == b"\x00\x00\x00"


def test_ip_hash_matches_nginx_formula() -> None:
    weights = [1, 2, 1, 3]
    balancer = Balancer([spec(str(i), weight=w) for i, w in enumerate(weights)], "ip_hash")
    rng = random.Random(7)
    for _ in range(500):
        ip = ".".join(str(rng.randrange(256)) for _ in range(4))
        peer = balancer.pick(0.0, ip)
        assert peer is not None
        assert int(peer.endpoint.host) == nginx_ip_hash(ip_hash_key(ip), weights)


def test_ip_hash_is_stable_per_client_and_per_slash_24() -> None:
    balancer = Balancer([spec("a"), spec("b"), spec("c")], "ip_hash")
    chosen = balancer.pick(0.0, "203.0.113.9")
    assert chosen is not None
    for _ in range(50):
        assert balancer.pick(0.0, "203.0.113.9") is chosen
    # Only the first three octets count, as in nginx.
    assert balancer.pick(0.0, "203.0.113.200") is chosen


def test_ip_hash_spreads_clients() -> None:
    balancer = Balancer([spec("a"), spec("b"), spec("c")], "ip_hash")
    counts = Counter(names([balancer.pick(0.0, f"10.{i // 256}.{i % 256}.1") for i in range(3000)]))
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) > 600


def test_ip_hash_rehashes_past_a_failed_peer_and_comes_back() -> None:
    balancer = Balancer([spec("a"), spec("b"), spec("c")], "ip_hash")
    client = "198.51.100.23"
    home = balancer.pick(0.0, client)
    assert home is not None
    balancer.report_failure(home, 0.0)
    elsewhere = balancer.pick(1.0, client)
    assert elsewhere is not None and elsewhere is not home
    for _ in range(10):
        assert balancer.pick(2.0, client) is elsewhere  # stable while home is out
    assert balancer.pick(20.0, client) is home  # back after fail_timeout


def test_ip_hash_ipv6_uses_the_whole_address() -> None:
    balancer = Balancer([spec(str(i)) for i in range(7)], "ip_hash")
    chosen = {balancer.pick(0.0, f"2001:db8::{i:x}") for i in range(64)}
    assert len(chosen) > 1  # differs only in the last bits, still spread


def test_ip_hash_retry_skips_tried_peer() -> None:
    balancer = Balancer([spec("a"), spec("b")], "ip_hash")
    first = balancer.pick(0.0, "192.0.2.1")
    assert first is not None
    second = balancer.pick(0.0, "192.0.2.1", tried={first})
    assert second is not None and second is not first


# --- replacing the peer set (DNS re-resolution) ---------------------------------------------


def test_replace_keeps_state_of_peers_that_stay() -> None:
    balancer = Balancer([spec("10.0.0.1"), spec("10.0.0.2")])
    old1, old2 = balancer.peers
    balancer.report_failure(old1, 0.0)
    balancer.acquire(old2)
    balancer.replace([spec("10.0.0.2"), spec("10.0.0.3"), spec("10.0.0.1")])
    kept2, new3, kept1 = balancer.peers
    assert kept1 is old1 and kept1.fails == 1
    assert kept2 is old2 and kept2.conns == 1
    assert new3.fails == 0 and new3.conns == 0
    # A replica that was removed is simply no longer chosen; releasing it is harmless.
    balancer.replace([spec("10.0.0.3")])
    assert balancer.peers == (new3,)
    balancer.release(old2)
    assert picks(balancer, 3) == "10.0.0.310.0.0.310.0.0.3"


def test_replace_scale_up_spreads_load_to_new_replicas() -> None:
    balancer = Balancer([spec("10.0.0.1")])
    assert balancer.single
    balancer.replace([spec(f"10.0.0.{i}") for i in range(1, 5)])
    assert not balancer.single
    counts = Counter(p.endpoint.host for p in [balancer.pick(0.0) for _ in range(400)] if p)
    assert set(counts.values()) == {100}


def test_replace_updates_weight_and_deduplicates() -> None:
    balancer = Balancer([spec("a", weight=5), spec("b")])
    a = balancer.peers[0]
    balancer.replace([spec("a", weight=2), spec("a", weight=9), spec("b")])
    assert balancer.peers[0] is a and a.weight == 2 and a.effective_weight == 2
    assert len(balancer.peers) == 2


def test_for_upstream_builds_from_config() -> None:
    config = build_config(
        {
            "upstreams": {
                "app": {
                    "balance": "least_conn",
                    "servers": [
                        {"address": "10.0.0.1:3031", "weight": 3, "max_fails": 2},
                        {"address": "10.0.0.2:3031", "backup": True},
                    ],
                }
            },
            "servers": [{"listen": 80, "locations": [{"path": "/", "proxy": "app"}]}],
        }
    )
    balancer = Balancer.for_upstream(config.upstream("app"))
    assert balancer.balance == "least_conn"
    primary, backup = balancer.peers
    assert (primary.weight, primary.max_fails, primary.server) == (3, 2, "10.0.0.1:3031")
    assert backup.backup
