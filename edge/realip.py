"""The real client address behind trusted proxies (nginx ``ngx_http_realip_module``), pure.

Only when the connection comes from a ``trusted`` network is the configured
header believed.  ``X-Real-IP`` (and any other single-address header) replaces
the address outright.  ``X-Forwarded-For`` is read from the right, since only
the entries our own proxies appended can be trusted: without ``recursive`` the
last entry is the client; with it, entries that are themselves trusted are
skipped and the first untrusted one is the client (the leftmost if all are
trusted).  An entry that is not an address stops the walk, keeping what was
found so far, as ``ngx_http_get_forwarded_addr`` does.
"""

from __future__ import annotations

from edge.access import IPAddress, parse_client_ip
from edge.config.schema import RealIp


def _trusted(address: IPAddress | None, settings: RealIp) -> bool:
    if address is None:
        return False
    return any(
        address.version == network.version and address in network for network in settings.trusted
    )


def _parse_entry(entry: str) -> IPAddress | None:
    entry = entry.strip()
    if entry.startswith("["):  # "[v6]:port"
        entry = entry[1 : entry.find("]")] if "]" in entry else entry
    elif entry.count(":") == 1:  # "v4:port"
        entry = entry.partition(":")[0]
    return parse_client_ip(entry)


def real_client_ip(peer_ip: str, header_value: bytes | str | None, settings: RealIp) -> str:
    """The address to log, limit and check ``allow``/``deny`` against."""
    if header_value is None or not settings.trusted:
        return peer_ip
    if not _trusted(parse_client_ip(peer_ip), settings):
        return peer_ip
    text = header_value.decode("latin-1") if isinstance(header_value, bytes) else header_value
    if settings.header.lower() != "x-forwarded-for":
        address = _parse_entry(text)
        return str(address) if address is not None else peer_ip
    client = peer_ip
    for entry in reversed([item for item in text.split(",") if item.strip()]):
        address = _parse_entry(entry)
        if address is None:
            return client
        client = str(address)
        if not settings.recursive or not _trusted(address, settings):
            return client
    return client
