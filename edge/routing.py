"""Which server block and which location handle a request: nginx's rules, pure.

Server selection (``ngx_http_find_virtual_server``): the connection's local
address picks the candidate servers (an exact ``listen`` address beats a
wildcard one on the same port); then the Host header picks among them: exact
name, longest leading wildcard (``*.example.com``, ``.example.com``), longest
trailing wildcard (``www.*``), then the first matching ``~regex`` name; else
the default server (``default_server``, or the first one listed).

Location selection (``ngx_http_core_find_location``), on the normalized URI:
``= /exact`` wins outright; otherwise the longest prefix is remembered; if it
is ``^~`` it wins; otherwise the ``~``/``~*`` regexes are tried in config
order and the first match wins; otherwise the remembered prefix does.  Regex
locations are supported because that is just ``re.search``; nested locations
and captures (``$1`` in alias) are not.

Nothing here does I/O or keeps mutable state: tables are built once per
config and swapped with it on reload.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from edge.config.schema import EdgeConfig, Listen, Location, Server

# --- URI normalization -------------------------------------------------------------

_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


def normalize_uri(raw_path: bytes | str) -> str | None:
    """nginx's ``$uri`` from the path part of a request target, or None (400 Bad Request).

    Percent-escapes are decoded (so ``%2e%2e`` is ``..`` and ``%2F`` is a
    slash, as in ``ngx_http_parse_complex_uri``), slashes are merged, ``.``
    segments dropped and ``..`` segments resolved.  A ``..`` that would climb
    above ``/``, a malformed escape, a decoded NUL, or a path that does not
    start with ``/`` is refused.  Bytes that are not UTF-8 survive as
    surrogate escapes, so ``os`` functions see the client's exact bytes.
    """
    data = raw_path.encode("utf-8", "surrogateescape") if isinstance(raw_path, str) else raw_path
    if not data.startswith(b"/"):
        return None
    if b"%" in data:
        if _BAD_PERCENT.search(data):
            return None
        data = _PERCENT.sub(lambda m: bytes((int(m.group(1), 16),)), data)
    if b"\x00" in data:
        return None
    if b"//" not in data and b"/." not in data:
        return data.decode("utf-8", "surrogateescape")  # the common case: already normal
    segments: list[bytes] = []
    parts = data.split(b"/")
    for part in parts[1:]:
        if part in (b"", b"."):
            continue
        if part == b"..":
            if not segments:
                return None
            segments.pop()
            continue
        segments.append(part)
    # "/a/", "/a/." and "/a/b/.." all name a directory: keep the trailing slash.
    trailing = parts[-1] in (b"", b".", b"..") and bool(segments)
    path = b"/" + b"/".join(segments) + (b"/" if trailing else b"")
    return path.decode("utf-8", "surrogateescape")


# --- locations ---------------------------------------------------------------------


class LocationTable:
    """The locations of one server, indexed for nginx's matching order."""

    __slots__ = ("_exact", "_prefixes", "_regexes", "_named")

    def __init__(self, locations: Iterable[Location]) -> None:
        self._exact: dict[str, Location] = {}
        prefixes: list[Location] = []
        self._regexes: list[tuple[re.Pattern[str], Location]] = []
        self._named: dict[str, Location] = {}
        for location in locations:
            if location.match == "exact":
                self._exact.setdefault(location.path, location)
            elif location.match in ("prefix", "prefix_no_regex"):
                prefixes.append(location)
            elif location.match == "regex":
                self._regexes.append((re.compile(location.path), location))
            elif location.match == "regex_icase":
                self._regexes.append((re.compile(location.path, re.IGNORECASE), location))
            else:
                self._named.setdefault(location.path, location)
        # Longest first, so the first startswith() hit is the longest prefix.
        # sorted() is stable: equal prefixes keep config order (the loader
        # refuses duplicates anyway).
        self._prefixes: tuple[Location, ...] = tuple(
            sorted(prefixes, key=lambda loc: len(loc.path), reverse=True)
        )

    def match(self, uri: str) -> Location | None:
        """The location for a normalized URI, or None (nginx answers 404)."""
        exact = self._exact.get(uri)
        if exact is not None:
            return exact
        longest: Location | None = None
        for location in self._prefixes:
            if uri.startswith(location.path):
                longest = location
                break
        if longest is not None and longest.match == "prefix_no_regex":
            return longest
        for pattern, location in self._regexes:
            if pattern.search(uri):
                return location
        return longest

    def named(self, name: str) -> Location | None:
        """The ``@name`` location (``name`` includes the ``@``) for a try_files fallback."""
        return self._named.get(name)


# --- servers -----------------------------------------------------------------------


# Host headers seen lately, normalized, and the server each one picked: the same few
# names arrive on every request.  The client chooses the header, so both are bounded.
_MEMO_SIZE = 1024
_NORMALIZED_HOSTS: dict[bytes | str, str] = {}


def normalize_host(host: bytes | str | None) -> str:
    """The Host header as nginx compares it: no port, lower case, no trailing dot."""
    if host is None:
        return ""
    found = _NORMALIZED_HOSTS.get(host)
    if found is None:
        found = _normalize_host(host)
        if len(_NORMALIZED_HOSTS) >= _MEMO_SIZE:
            _NORMALIZED_HOSTS.clear()
        _NORMALIZED_HOSTS[host] = found
    return found


def _normalize_host(host: bytes | str) -> str:
    text = host.decode("latin-1") if isinstance(host, bytes) else host
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        text = text[: end + 1] if end >= 0 else text
    else:
        text = text.rpartition(":")[0] if ":" in text else text
    return text.lower().rstrip(".")


class _NameIndex:
    """One listen address's servers, indexed by server_name the way nginx looks them up."""

    __slots__ = ("default", "_exact", "_leading", "_trailing", "_regexes")

    def __init__(self, servers: Sequence[Server]) -> None:
        self.default: Server = next((s for s in servers if s.default_server), servers[0])
        self._exact: dict[str, Server] = {}
        leading: list[tuple[str, Server]] = []  # suffix to match, e.g. ".example.com"
        trailing: list[tuple[str, Server]] = []  # prefix to match, e.g. "www."
        self._regexes: list[tuple[re.Pattern[str], Server]] = []
        for server in servers:
            for name in server.server_name:
                if name.startswith("~"):
                    self._regexes.append((re.compile(name[1:]), server))
                elif name.startswith("*."):
                    leading.append((name[1:], server))
                elif name.startswith("."):
                    # ".example.com" is both "example.com" and "*.example.com".
                    self._exact.setdefault(name[1:], server)
                    leading.append((name, server))
                elif name.endswith(".*"):
                    trailing.append((name[:-1], server))
                else:
                    self._exact.setdefault(name, server)
        self._leading = sorted(leading, key=lambda item: len(item[0]), reverse=True)
        self._trailing = sorted(trailing, key=lambda item: len(item[0]), reverse=True)

    def find(self, host: str) -> Server:
        server = self._exact.get(host)
        if server is not None:
            return server
        for suffix, server in self._leading:
            if host.endswith(suffix) and len(host) > len(suffix):
                return server
        for prefix, server in self._trailing:
            if host.startswith(prefix) and len(host) > len(prefix):
                return server
        for pattern, server in self._regexes:
            if pattern.search(host):
                return server
        return self.default


class Router:
    """Server and location selection for one ``EdgeConfig``; build once, swap on reload."""

    __slots__ = ("_by_listen", "_by_port", "_fallback", "_tables", "_chosen")

    def __init__(self, config: EdgeConfig | Sequence[Server]) -> None:
        servers = config.servers if isinstance(config, EdgeConfig) else tuple(config)
        if not servers:
            raise ValueError("a router needs at least one server")
        grouped: dict[Listen, list[Server]] = {}
        by_port: dict[int, list[Server]] = {}
        for server in servers:
            for listen in server.listen:
                grouped.setdefault(listen, []).append(server)
                same_port = by_port.setdefault(listen.port, [])
                if all(other is not server for other in same_port):
                    same_port.append(server)
        self._by_listen = {listen: _NameIndex(group) for listen, group in grouped.items()}
        self._by_port = {port: _NameIndex(group) for port, group in by_port.items()}
        self._fallback = _NameIndex(servers)
        # Keyed by identity: Server is hashable but two equal blocks are still two blocks.
        self._tables = {id(server): LocationTable(server.locations) for server in servers}
        self._chosen: dict[tuple[str, int, str], Server] = {}

    def server_for(self, local_host: str, local_port: int, host: bytes | str | None) -> Server:
        """The server block for a connection accepted on ``local_host:local_port``."""
        name = normalize_host(host)
        key = (local_host, local_port, name)
        server = self._chosen.get(key)
        if server is None:
            server = self._find_server(local_host, local_port, name)
            if len(self._chosen) >= _MEMO_SIZE:
                self._chosen.clear()
            self._chosen[key] = server
        return server

    def _find_server(self, local_host: str, local_port: int, name: str) -> Server:
        index = self._by_listen.get(Listen(local_host, local_port))
        if index is None:
            wildcard = "::" if ":" in local_host else "0.0.0.0"
            index = self._by_listen.get(Listen(wildcard, local_port))
        if index is None:
            # A listen given as a host name ("localhost:8000"), or a v4 client on a
            # dual-stack socket: match on the port alone.
            index = self._by_port.get(local_port, self._fallback)
        return index.find(name)

    def locations(self, server: Server) -> LocationTable:
        return self._tables[id(server)]

    def route(
        self, local_host: str, local_port: int, host: bytes | str | None, uri: str
    ) -> tuple[Server, Location | None]:
        """Server and location for a normalized URI; a None location means 404."""
        server = self.server_for(local_host, local_port, host)
        return server, self._tables[id(server)].match(uri)
