"""``allow`` / ``deny`` per location (nginx ``ngx_http_access_module``), pure.

Rules are checked in order and the first whose network contains the client
decides; ``deny all`` / ``allow all`` match everyone; a client no rule
matches is allowed, as in nginx.  IPv4-mapped IPv6 clients (``::ffff:a.b.c.d``
from a dual-stack socket) are checked against IPv4 rules, as nginx does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from edge.config.schema import AccessRule

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_client_ip(client_ip: str | None) -> IPAddress | None:
    """The client's address for rule matching; None for unix-socket or unparsable peers."""
    if not client_ip:
        return None
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def access_allowed(rules: Sequence[AccessRule], client_ip: str | None) -> bool:
    """False means 403 Forbidden."""
    if not rules:
        return True
    address = parse_client_ip(client_ip)
    for rule in rules:
        network = rule.network
        if network is None:
            return rule.allow
        if address is not None and address.version == network.version and address in network:
            return rule.allow
    return True
