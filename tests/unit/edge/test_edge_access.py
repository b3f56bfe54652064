"""edge.access (allow/deny) and edge.realip (trusted proxies), as nginx evaluates them."""

from __future__ import annotations

import ipaddress

import pytest

from edge.access import access_allowed
from edge.config.schema import AccessRule, RealIp
from edge.realip import real_client_ip


def rules(*lines: str) -> tuple[AccessRule, ...]:
    result = []
    for line in lines:
        verb, target = line.split()
        network = None if target == "all" else ipaddress.ip_network(target, strict=False)
        result.append(AccessRule(allow=verb == "allow", network=network))
    return tuple(result)


def test_no_rules_allows_everyone() -> None:
    assert access_allowed((), "203.0.113.1")


def test_first_matching_rule_wins() -> None:
    policy = rules("deny 192.168.1.1", "allow 192.168.1.0/24", "allow 10.0.0.0/8", "deny all")
    assert not access_allowed(policy, "192.168.1.1")
    assert access_allowed(policy, "192.168.1.2")
    assert access_allowed(policy, "10.9.8.7")
    assert not access_allowed(policy, "203.0.113.1")
    assert not access_allowed(policy, "2001:db8::1")


def test_unmatched_client_is_allowed_like_nginx() -> None:
    assert access_allowed(rules("deny 10.0.0.0/8"), "192.0.2.1")


def test_ipv6_rules_and_v4_mapped_clients() -> None:
    policy = rules("allow 2001:db8::/32", "allow 127.0.0.1", "deny all")
    assert access_allowed(policy, "2001:db8::5")
    assert access_allowed(policy, "::ffff:127.0.0.1")  # dual-stack socket view of 127.0.0.1
    assert not access_allowed(policy, "::1")


def test_unix_socket_client_only_matches_all() -> None:
    assert not access_allowed(rules("allow 0.0.0.0/0", "deny all"), None)
    assert access_allowed(rules("deny 0.0.0.0/0"), "")


TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "header", "settings", "expected"),
    [
        # Untrusted peers are never believed.
        ("203.0.113.5", "1.1.1.1", RealIp(TRUSTED), "203.0.113.5"),
        # No trusted networks configured: the module is off.
        ("10.0.0.1", "1.1.1.1", RealIp(), "10.0.0.1"),
        ("10.0.0.1", None, RealIp(TRUSTED), "10.0.0.1"),
        # X-Real-IP: one address.
        ("10.0.0.1", b"198.51.100.7", RealIp(TRUSTED), "198.51.100.7"),
        ("10.0.0.1", "garbage", RealIp(TRUSTED), "10.0.0.1"),
        ("10.0.0.1", "198.51.100.7:5555", RealIp(TRUSTED), "198.51.100.7"),
        # X-Forwarded-For without recursion: the last entry.
        ("10.0.0.1", "1.1.1.1, 10.0.0.2", RealIp(TRUSTED, "X-Forwarded-For"), "10.0.0.2"),
        # With recursion: skip trusted hops from the right.
        (
            "10.0.0.1",
            "6.6.6.6, 1.1.1.1, 10.0.0.2",
            RealIp(TRUSTED, "X-Forwarded-For", True),
            "1.1.1.1",
        ),
        ("10.0.0.1", "10.0.0.3,10.0.0.2", RealIp(TRUSTED, "x-forwarded-for", True), "10.0.0.3"),
        ("10.0.0.1", "junk, 10.0.0.2", RealIp(TRUSTED, "X-Forwarded-For", True), "10.0.0.2"),
        (
            "10.0.0.1",
            "2001:db8::9, fd00::1",
            RealIp(TRUSTED, "X-Forwarded-For", True),
            "2001:db8::9",
        ),
        ("10.0.0.1", "[2001:db8::9]:443", RealIp(TRUSTED, "X-Forwarded-For"), "2001:db8::9"),
        ("10.0.0.1", "", RealIp(TRUSTED, "X-Forwarded-For"), "10.0.0.1"),
    ],
)
def test_real_client_ip(
    peer: str, header: str | bytes | None, settings: RealIp, expected: str
) -> None:
    assert real_client_ip(peer, header, settings) == expected
