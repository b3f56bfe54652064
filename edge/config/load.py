"""YAML (or quick-mode flags) -> ``EdgeConfig``: the only place that validates.

Theory of operation: a ``_Builder`` walks the parsed YAML once, converting
each node into schema objects.  It never raises on a bad value; it records a
``ConfigIssue(path, message)`` whose path names the node the way a user would
find it in the file (``servers[0].locations[2].alias``), substitutes the
default, and keeps going, so ``edge -t`` reports every mistake in one run.
Cross-references (upstream names, limit zones, ``@named`` try_files targets)
are checked after their sections are built.  At the end, any issue means one
``ConfigErrors`` carrying all of them.

The YAML spelling follows nginx's directive names where one exists
(``client_max_body_size``, ``try_files``, ``max_fails`` ...), with sizes like
``1m``/``8k`` and durations like ``60s``/``500ms``/``1m``.  A location is flat:
``root``/``alias`` make it static, ``proxy: UPSTREAM`` makes it a proxy,
``return`` makes it a fixed response, and exactly one of those must be present.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeVar

import yaml

from edge.config.schema import (
    KNOWN_VARIABLES,
    MIB,
    UPSTREAM_KEEPALIVE_TIMEOUT,
    VARIABLE_PREFIXES,
    AccessLogSettings,
    AccessRule,
    Balance,
    CacheSettings,
    EdgeConfig,
    Endpoint,
    ErrorLogSettings,
    Expires,
    Handler,
    HeaderBuffers,
    IPNetwork,
    LimitConnRule,
    LimitConnZone,
    LimitReqRule,
    LimitReqZone,
    Listen,
    Location,
    MatchKind,
    OpenFileCache,
    Protocol,
    ProxyHandler,
    ProxyParam,
    RealIp,
    ReturnHandler,
    Server,
    StaticHandler,
    Upstream,
    UpstreamServer,
)

T = TypeVar("T")


class ConfigIssue(NamedTuple):
    """One problem: where it is in the YAML (or which flag), and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigErrors(Exception):
    """Every problem found in one configuration; ``str()`` is one issue per line."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


# --- scalar parsers (public: the CLI and tests use them) ------------------------

_SIZE_RE = re.compile(r"\s*(\d+)\s*([kKmMgG]?)\s*")
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}

# nginx's ngx_parse_time units: "1h 30m", "500ms", "2d"; a bare number is seconds.
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|M|y)?")
_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    None: 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "M": 2592000.0,
    "y": 31536000.0,
}
_RATE_RE = re.compile(r"\s*(\d+)\s*r/([sm])\s*")


def parse_size(value: object) -> int:
    """``1m`` -> 1048576, ``8k`` -> 8192, ``512`` -> 512 (nginx's size syntax)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 1m or 8k, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value)
        if match:
            return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    raise ValueError(f"expected a size like 1m or 8k, got {value!r}")


def parse_duration(value: object, *, allow_negative: bool = False) -> float:
    """``60s`` -> 60.0, ``500ms`` -> 0.5, ``1m`` -> 60.0, ``1h 30m`` -> 5400.0, ``5`` -> 5.0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 60s or 500ms, got {value!r}")
    if isinstance(value, int | float):
        if value < 0 and not allow_negative:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        sign = 1.0
        if allow_negative and text.startswith("-"):
            sign, text = -1.0, text[1:]
        parts = text.split()
        total = 0.0
        ok = bool(parts)
        for part in parts:
            # A part may itself chain units without spaces ("1m30s").
            pos = 0
            while pos < len(part):
                match = _DURATION_PART_RE.match(part, pos)
                if not match or match.end() == pos:
                    ok = False
                    break
                total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
                pos = match.end()
        if ok:
            return sign * total
    raise ValueError(f"expected a duration like 60s or 500ms, got {value!r}")


def parse_rate(value: object) -> int:
    """``10r/s`` -> 10000, ``30r/m`` -> 500: milli-requests per second, as nginx stores it."""
    if isinstance(value, str):
        match = _RATE_RE.fullmatch(value)
        if match:
            rate = int(match.group(1))
            scale = 1 if match.group(2) == "s" else 60
            milli = rate * 1000 // scale
            if milli <= 0:
                raise ValueError(f"rate {value!r} is zero")
            return milli
    raise ValueError(f"expected a rate like 10r/s or 30r/m, got {value!r}")


def parse_listen(value: object) -> Listen:
    """``8000``, ``"127.0.0.1:8000"``, ``"*:8000"``, ``"[::]:8000"`` -> ``Listen``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a port or host:port, got {value!r}")
    if isinstance(value, int):
        return Listen(port=_check_port(value))
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a port or host:port, got {value!r}")
    text = value.strip()
    if text.isdigit():
        return Listen(port=_check_port(int(text)))
    host, port = _split_host_port(text)
    if port is None:
        raise ValueError(f"{text!r} has no port")
    if host in ("", "*"):
        host = "0.0.0.0"
    return Listen(host=host, port=port)


def parse_endpoint(value: object) -> Endpoint:
    """``host:port``, ``[v6]:port`` or ``unix:/path`` -> ``Endpoint`` (a port is required)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected host:port or unix:/path, got {value!r}")
    text = value.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise ValueError("unix: needs a socket path")
        return Endpoint(path=path)
    host, port = _split_host_port(text)
    if not host:
        raise ValueError(f"{text!r} has no host")
    if port is None:
        raise ValueError(f"{text!r} has no port")
    return Endpoint(host=host, port=port)


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"unclosed '[' in {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after ']' in {text!r}")
        return host, _parse_port(rest[1:], text)
    if text.count(":") > 1:
        raise ValueError(f"write IPv6 addresses in brackets: [{text}]:PORT")
    host, sep, port_text = text.partition(":")
    if not sep:
        return host, None
    return host, _parse_port(port_text, text)


def _parse_port(text: str, whole: str) -> int:
    if not text.isdigit():
        raise ValueError(f"invalid port in {whole!r}")
    return _check_port(int(text))


def _check_port(port: int) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return port


def _parse_network(text: str) -> IPNetwork:
    # strict=False accepts "10.1.2.3/8" as nginx does (it masks the host bits).
    return ipaddress.ip_network(text.strip(), strict=False)


_VARIABLE_RE = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def unknown_variables(text: str) -> list[str]:
    """The ``$variables`` in ``text`` that the proxy does not implement."""
    bad = []
    for match in _VARIABLE_RE.finditer(text):
        name = match.group(1) or match.group(2)
        if name not in KNOWN_VARIABLES and not name.startswith(VARIABLE_PREFIXES):
            bad.append(name)
    if "$" in _VARIABLE_RE.sub("", text):
        bad.append("")  # a lone "$" or "${" that names nothing
    return bad


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(node: object) -> str:
    if node is None:
        return "nothing"
    if isinstance(node, bool):
        return "a boolean"
    if isinstance(node, int | float):
        return "a number"
    if isinstance(node, str):
        return "a string"
    if isinstance(node, list):
        return "a list"
    if isinstance(node, dict):
        return "a mapping"
    return type(node).__name__


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- key sets -------------------------------------------------------------------

_TOP_KEYS = (
    "servers",
    "upstreams",
    "limit_req_zones",
    "limit_conn_zones",
    "worker_processes",
    "worker_connections",
    "access_log",
    "error_log",
    "real_ip",
)
_SERVER_KEYS = (
    "listen",
    "server_name",
    "default_server",
    "locations",
    "client_max_body_size",
    "client_header_buffer_size",
    "large_client_header_buffers",
    "client_header_timeout",
    "client_body_timeout",
    "send_timeout",
    "keepalive_timeout",
    "keepalive_requests",
)
_LOCATION_COMMON_KEYS = ("path", "access", "limit_req", "limit_conn", "client_max_body_size")
_STATIC_KEYS = (
    "root",
    "alias",
    "index",
    "try_files",
    "autoindex",
    "gzip_static",
    "expires",
    "open_file_cache",
    "allow_symlinks_outside",
)
_PROXY_KEYS = (
    "proxy",
    "protocol",
    "params",
    "proxy_connect_timeout",
    "proxy_send_timeout",
    "proxy_read_timeout",
    "ignore_client_abort",
    "next_upstream",
    "next_upstream_tries",
    "next_upstream_timeout",
    "host_header",
    "modifier1",
    "cache",
)
_RETURN_KEYS = ("return",)
_LOCATION_KEYS = _LOCATION_COMMON_KEYS + _STATIC_KEYS + _PROXY_KEYS + _RETURN_KEYS
_HANDLER_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # (handler, keys that select it, keys that belong to it)
    ("static", ("root", "alias"), _STATIC_KEYS),
    ("proxy", ("proxy",), _PROXY_KEYS),
    ("return", ("return",), _RETURN_KEYS),
)
_UPSTREAM_KEYS = ("servers", "balance", "resolve", "keepalive", "keepalive_timeout")
_UPSTREAM_SERVER_KEYS = (
    "address",
    "weight",
    "max_fails",
    "fail_timeout",
    "backup",
    "down",
    "max_conns",
)
_NEXT_UPSTREAM_VALUES = (
    "error",
    "timeout",
    "invalid_header",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
    "non_idempotent",
    "off",
)
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")

_MISSING = object()


class _Builder:
    """Walks parsed YAML, collecting issues instead of raising."""

    def __init__(self, *, base_dir: str, check_paths: bool) -> None:
        self.issues: list[ConfigIssue] = []
        self.base_dir = base_dir
        self.check_paths = check_paths

    # -- plumbing ---------------------------------------------------------------

    def error(self, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(path, message))

    def mapping(self, node: object, path: str, allowed: Collection[str]) -> dict[str, Any] | None:
        """``node`` as a dict whose keys are all in ``allowed``; unknown keys are reported."""
        if not isinstance(node, dict):
            self.error(path, f"expected a mapping, got {_kind(node)}")
            return None
        for key in node:
            if not isinstance(key, str):
                self.error(path, f"keys must be strings, got {key!r}")
            elif key not in allowed:
                self.error(_join(path, key), f"unknown key{_suggest(key, allowed)}")
        return node

    def field(
        self,
        node: Mapping[str, Any],
        key: str,
        path: str,
        convert: Callable[[Any], T],
        default: T,
    ) -> T:
        """``convert(node[key])``, or ``default`` when absent or invalid (invalid is recorded)."""
        raw = node.get(key, _MISSING)
        if raw is _MISSING:
            return default
        try:
            return convert(raw)
        except ValueError as exc:
            self.error(_join(path, key), str(exc))
            return default

    def list_of(self, node: object) -> list[Any]:
        """A YAML list (a single item is accepted as a list of one, as nginx repeats directives)."""
        if node is None:
            return []
        if isinstance(node, list):
            return node
        return [node]

    # -- top level --------------------------------------------------------------

    def build(self, data: object, source: str | None) -> EdgeConfig:
        if data is None:
            data = {}
        top = self.mapping(data, "", _TOP_KEYS)
        if top is None:
            return EdgeConfig(servers=())
        zones_req = self.limit_req_zones(top.get("limit_req_zones"), "limit_req_zones")
        zones_conn = self.limit_conn_zones(top.get("limit_conn_zones"), "limit_conn_zones")
        upstreams = self.upstreams(top.get("upstreams"), "upstreams")
        context = _Names(
            upstreams={u.name for u in upstreams},
            req_zones={z.name for z in zones_req},
            conn_zones={z.name for z in zones_conn},
        )
        servers = self.servers(top.get("servers", _MISSING), "servers", context)
        return EdgeConfig(
            servers=servers,
            upstreams=upstreams,
            limit_req_zones=zones_req,
            limit_conn_zones=zones_conn,
            worker_processes=self.field(top, "worker_processes", "", _worker_processes, 1),
            worker_connections=self.field(top, "worker_connections", "", _int_at_least(1), 512),
            access_log=self.access_log(top.get("access_log", _MISSING), "access_log"),
            error_log=self.error_log(top.get("error_log", _MISSING), "error_log"),
            real_ip=self.real_ip(top.get("real_ip"), "real_ip"),
            source=source,
        )

    def access_log(self, node: object, path: str) -> AccessLogSettings:
        if node is _MISSING:
            return AccessLogSettings()
        if node is None or node is False or node == "off":
            return AccessLogSettings(path=None)
        if isinstance(node, str):
            return AccessLogSettings(path=self.file_path(node))
        spec = self.mapping(node, path, ("path", "format"))
        if spec is None:
            return AccessLogSettings()
        target = spec.get("path", "stdout")
        if target is False or target is None or target == "off":
            log_path: str | None = None
        elif isinstance(target, str) and target:
            log_path = self.file_path(target)
        else:
            self.error(
                _join(path, "path"),
                f"expected a file path, stdout, stderr or off, got {_kind(target)}",
            )
            log_path = "stdout"
        return AccessLogSettings(
            path=log_path,
            format=self.field(spec, "format", path, _choice(("combined", "json")), "combined"),
        )

    def error_log(self, node: object, path: str) -> ErrorLogSettings:
        if node is _MISSING or node is None:
            return ErrorLogSettings()
        if isinstance(node, str):
            return ErrorLogSettings(path=self.file_path(node))
        spec = self.mapping(node, path, ("path", "level"))
        if spec is None:
            return ErrorLogSettings()
        target = spec.get("path", "stderr")
        if not isinstance(target, str) or not target:
            self.error(_join(path, "path"), f"expected a file path or stderr, got {_kind(target)}")
            target = "stderr"
        return ErrorLogSettings(
            path=self.file_path(target),
            level=self.field(spec, "level", path, _choice(_LOG_LEVELS), "error"),
        )

    def file_path(self, text: str) -> str:
        if text in ("stdout", "stderr"):
            return text
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(text)))

    def real_ip(self, node: object, path: str) -> RealIp:
        if node is None:
            return RealIp()
        spec = self.mapping(node, path, ("trusted", "header", "recursive"))
        if spec is None:
            return RealIp()
        trusted: list[IPNetwork] = []
        for i, item in enumerate(self.list_of(spec.get("trusted"))):
            item_path = f"{_join(path, 'trusted')}[{i}]"
            if not isinstance(item, str):
                self.error(item_path, f"expected an address or CIDR, got {_kind(item)}")
                continue
            try:
                trusted.append(_parse_network(item))
            except ValueError as exc:
                self.error(item_path, str(exc))
        return RealIp(
            trusted=tuple(trusted),
            header=self.field(spec, "header", path, _header_name, "X-Real-IP"),
            recursive=self.field(spec, "recursive", path, _bool, False),
        )

    # -- zones ------------------------------------------------------------------

    def limit_req_zones(self, node: object, path: str) -> tuple[LimitReqZone, ...]:
        zones = []
        for name, spec_node in self.named_mapping(node, path):
            zone_path = _join(path, name)
            spec = self.mapping(spec_node, zone_path, ("rate", "max_keys"))
            if spec is None:
                continue
            if "rate" not in spec:
                self.error(zone_path, "missing required key 'rate' (like 10r/s)")
            rate = self.field(spec, "rate", zone_path, parse_rate, 1000)
            max_keys = self.field(spec, "max_keys", zone_path, _int_at_least(1), 100_000)
            zones.append(LimitReqZone(name=name, rate_milli=rate, max_keys=max_keys))
        return tuple(zones)

    def limit_conn_zones(self, node: object, path: str) -> tuple[LimitConnZone, ...]:
        zones = []
        for name, spec_node in self.named_mapping(node, path):
            zone_path = _join(path, name)
            spec = self.mapping(
                spec_node if spec_node is not None else {}, zone_path, ("max_keys",)
            )
            if spec is None:
                continue
            max_keys = self.field(spec, "max_keys", zone_path, _int_at_least(1), 100_000)
            zones.append(LimitConnZone(name=name, max_keys=max_keys))
        return tuple(zones)

    def named_mapping(self, node: object, path: str) -> list[tuple[str, object]]:
        """The (name, value) pairs of a ``{name: spec}`` section."""
        if node is None:
            return []
        if not isinstance(node, dict):
            self.error(path, f"expected a mapping of names, got {_kind(node)}")
            return []
        pairs = []
        for name, value in node.items():
            if not isinstance(name, str) or not name:
                self.error(path, f"names must be non-empty strings, got {name!r}")
                continue
            pairs.append((name, value))
        return pairs

    # -- upstreams --------------------------------------------------------------

    def upstreams(self, node: object, path: str) -> tuple[Upstream, ...]:
        result = []
        for name, spec_node in self.named_mapping(node, path):
            upstream = self.upstream(name, spec_node, _join(path, name))
            if upstream is not None:
                result.append(upstream)
        return tuple(result)

    def upstream(self, name: str, node: object, path: str) -> Upstream | None:
        spec = self.mapping(node, path, _UPSTREAM_KEYS)
        if spec is None:
            return None
        balance: Balance = self.field(
            spec, "balance", path, _choice(("round_robin", "least_conn", "ip_hash")), "round_robin"
        )
        servers_path = _join(path, "servers")
        raw_servers = spec.get("servers")
        if raw_servers is None:
            self.error(path, "missing required key 'servers'")
            raw_servers = []
        elif not isinstance(raw_servers, list):
            raw_servers = [raw_servers]
        servers = []
        for i, item in enumerate(raw_servers):
            server = self.upstream_server(item, f"{servers_path}[{i}]", balance)
            if server is not None:
                servers.append(server)
        if raw_servers and servers and all(s.backup for s in servers):
            self.error(servers_path, "every server is a backup; at least one must not be")
        elif "servers" in spec and not raw_servers:
            self.error(servers_path, "an upstream needs at least one server")
        return Upstream(
            name=name,
            servers=tuple(servers),
            balance=balance,
            resolve=self.field(spec, "resolve", path, _duration_or_off, 5.0),
            keepalive=self.field(spec, "keepalive", path, _int_at_least(0), 32),
            keepalive_timeout=self.field(
                spec, "keepalive_timeout", path, parse_duration, UPSTREAM_KEEPALIVE_TIMEOUT
            ),
        )

    def upstream_server(self, node: object, path: str, balance: str) -> UpstreamServer | None:
        if isinstance(node, str):
            node = {"address": node}
        spec = self.mapping(node, path, _UPSTREAM_SERVER_KEYS)
        if spec is None:
            return None
        if "address" not in spec:
            self.error(path, "missing required key 'address' (host:port or unix:/path)")
            return None
        try:
            endpoint = parse_endpoint(spec["address"])
        except ValueError as exc:
            self.error(_join(path, "address"), str(exc))
            return None
        backup = self.field(spec, "backup", path, _bool, False)
        if backup and balance == "ip_hash":
            # As nginx: ip_hash would send a client's hash bucket to the
            # backup while its primary is fine, so it refuses the pairing.
            self.error(_join(path, "backup"), "balance ip_hash does not support backup servers")
        return UpstreamServer(
            endpoint=endpoint,
            weight=self.field(spec, "weight", path, _int_at_least(1), 1),
            max_fails=self.field(spec, "max_fails", path, _int_at_least(0), 1),
            fail_timeout=self.field(spec, "fail_timeout", path, parse_duration, 10.0),
            backup=backup,
            down=self.field(spec, "down", path, _bool, False),
            max_conns=self.field(spec, "max_conns", path, _int_at_least(0), 0),
        )

    # -- servers ----------------------------------------------------------------

    def servers(self, node: object, path: str, names: _Names) -> tuple[Server, ...]:
        if node is _MISSING or node is None:
            self.error(path, "at least one server is required")
            return ()
        if not isinstance(node, list):
            self.error(path, f"expected a list of servers, got {_kind(node)}")
            return ()
        if not node:
            self.error(path, "at least one server is required")
        servers = []
        for i, item in enumerate(node):
            server = self.server(item, f"{path}[{i}]", names)
            if server is not None:
                servers.append((f"{path}[{i}]", server))
        self.check_server_conflicts(servers)
        return tuple(server for _, server in servers)

    def server(self, node: object, path: str, names: _Names) -> Server | None:
        spec = self.mapping(node, path, _SERVER_KEYS)
        if spec is None:
            return None
        listens = []
        raw_listen = spec.get("listen", _MISSING)
        if raw_listen is _MISSING:
            listens = [Listen()]
        else:
            items = self.list_of(raw_listen)
            for i, item in enumerate(items):
                item_path = _join(path, "listen") + (
                    f"[{i}]" if isinstance(raw_listen, list) else ""
                )
                try:
                    listens.append(parse_listen(item))
                except ValueError as exc:
                    self.error(item_path, str(exc))
            if not items:
                self.error(_join(path, "listen"), "needs at least one address")
        server_names = []
        for i, item in enumerate(self.list_of(spec.get("server_name"))):
            item_path = _join(path, "server_name")
            if isinstance(spec.get("server_name"), list):
                item_path += f"[{i}]"
            if not isinstance(item, str):
                self.error(item_path, f"expected a host name, got {_kind(item)}")
                continue
            if item.startswith("~"):
                try:
                    re.compile(item[1:])
                except re.error as exc:
                    self.error(item_path, f"invalid regex: {exc}")
                    continue
            server_names.append(item if item.startswith("~") else item.lower().rstrip("."))
        buffers = self.field(
            spec, "large_client_header_buffers", path, _header_buffers, HeaderBuffers()
        )
        header_buffer = self.field(spec, "client_header_buffer_size", path, parse_size, 1024)
        locations = self.locations(spec.get("locations"), _join(path, "locations"), names)
        return Server(
            listen=tuple(listens),
            server_name=tuple(server_names),
            default_server=self.field(spec, "default_server", path, _bool, False),
            locations=locations,
            client_max_body_size=self.field(spec, "client_max_body_size", path, parse_size, MIB),
            client_header_buffer_size=header_buffer,
            large_client_header_buffers=buffers,
            client_header_timeout=self.field(
                spec, "client_header_timeout", path, parse_duration, 60.0
            ),
            client_body_timeout=self.field(spec, "client_body_timeout", path, parse_duration, 60.0),
            send_timeout=self.field(spec, "send_timeout", path, parse_duration, 60.0),
            keepalive_timeout=self.field(spec, "keepalive_timeout", path, parse_duration, 75.0),
            keepalive_requests=self.field(spec, "keepalive_requests", path, _int_at_least(0), 1000),
        )

    def check_server_conflicts(self, servers: list[tuple[str, Server]]) -> None:
        """Two defaults on one address, or one name twice on one address, are errors (nginx
        only warns about the second, then silently ignores a server: worse than failing)."""
        defaults: dict[Listen, str] = {}
        named: dict[tuple[Listen, str], str] = {}
        for path, server in servers:
            for listen in server.listen:
                if server.default_server:
                    if listen in defaults:
                        self.error(
                            _join(path, "default_server"),
                            f"{listen} already has a default server ({defaults[listen]})",
                        )
                    else:
                        defaults[listen] = path
                for name in server.server_name:
                    key = (listen, name)
                    if key in named and named[key] != path:
                        self.error(
                            _join(path, "server_name"),
                            f"{name!r} on {listen} is already used by {named[key]}",
                        )
                    else:
                        named[key] = path

    # -- locations --------------------------------------------------------------

    def locations(self, node: object, path: str, names: _Names) -> tuple[Location, ...]:
        if node is None:
            return ()
        if not isinstance(node, list):
            self.error(path, f"expected a list of locations, got {_kind(node)}")
            return ()
        built: list[tuple[str, Location]] = []
        seen: dict[tuple[MatchKind, str], str] = {}
        for i, item in enumerate(node):
            item_path = f"{path}[{i}]"
            location = self.location(item, item_path, names)
            if location is None:
                continue
            key = (location.match, location.path)
            if location.match in ("prefix", "prefix_no_regex"):
                key = ("prefix", location.path)  # "/a" and "^~ /a" are the same prefix to nginx
            if key in seen:
                self.error(
                    _join(item_path, "path"),
                    f"duplicate location {str(location)!r} (also {seen[key]})",
                )
            else:
                seen[key] = item_path
            built.append((item_path, location))
        named = {loc.path for _, loc in built if loc.match == "named"}
        for item_path, location in built:
            handler = location.handler
            if isinstance(handler, StaticHandler) and handler.try_files:
                fallback = handler.try_files[-1]
                if fallback.startswith("@") and fallback not in named:
                    self.error(
                        _join(item_path, "try_files"),
                        f"no named location {fallback!r} in this server{_suggest(fallback, named)}",
                    )
        return tuple(location for _, location in built)

    def location(self, node: object, path: str, names: _Names) -> Location | None:
        spec = self.mapping(node, path, _LOCATION_KEYS)
        if spec is None:
            return None
        matched = self.location_path(spec.get("path", _MISSING), _join(path, "path"))
        present = [
            (handler, keys)
            for handler, selectors, keys in _HANDLER_GROUPS
            if any(key in spec for key in selectors)
        ]
        if not present:
            self.error(
                path,
                "a location needs one handler: root or alias (static files), "
                "proxy (an upstream) or return (a fixed response)",
            )
            return None
        if len(present) > 1:
            chosen = ", ".join(handler for handler, _ in present)
            self.error(path, f"a location has exactly one handler, this one has {chosen}")
            return None
        handler_name, own_keys = present[0]
        for _, _, keys in _HANDLER_GROUPS:
            if keys is own_keys:
                continue
            for key in keys:
                if key in spec:
                    self.error(_join(path, key), f"does not apply to a {handler_name} location")
        # Build the handler even when the path was bad, so its errors are reported too.
        match, pattern = matched if matched is not None else ("prefix", "/")
        handler: Handler | None
        if handler_name == "static":
            handler = self.static_handler(spec, path, match)
        elif handler_name == "proxy":
            handler = self.proxy_handler(spec, path, names)
        else:
            handler = self.return_handler(spec["return"], _join(path, "return"))
        body_size = spec.get("client_max_body_size", _MISSING)
        access = self.access_rules(spec.get("access"), _join(path, "access"))
        limit_req = self.limit_req_rules(spec.get("limit_req"), _join(path, "limit_req"), names)
        limit_conn = self.limit_conn_rules(spec.get("limit_conn"), _join(path, "limit_conn"), names)
        max_body: int | None = None
        if body_size is not _MISSING:
            max_body = self.field(spec, "client_max_body_size", path, parse_size, MIB)
        if handler is None or matched is None:
            return None
        return Location(
            path=pattern,
            match=match,
            handler=handler,
            access=access,
            limit_req=limit_req,
            limit_conn=limit_conn,
            client_max_body_size=max_body,
        )

    def location_path(self, node: object, path: str) -> tuple[MatchKind, str] | None:
        if node is _MISSING:
            self.error(
                path, "missing: every location needs a path like /static/ or '= /favicon.ico'"
            )
            return None
        if not isinstance(node, str) or not node.strip():
            self.error(path, f"expected a location path, got {_kind(node)}")
            return None
        text = node.strip()
        modifiers: tuple[tuple[str, MatchKind], ...] = (
            ("^~", "prefix_no_regex"),
            ("~*", "regex_icase"),
            ("=", "exact"),
            ("~", "regex"),
        )
        for prefix, kind in modifiers:
            if text.startswith(prefix):
                pattern = text[len(prefix) :].strip()
                if not pattern:
                    self.error(path, f"{prefix!r} needs a pattern after it")
                    return None
                if kind in ("regex", "regex_icase"):
                    try:
                        re.compile(pattern)
                    except re.error as exc:
                        self.error(path, f"invalid regex: {exc}")
                        return None
                elif not pattern.startswith("/"):
                    self.error(path, f"a path must start with '/', got {pattern!r}")
                    return None
                return kind, pattern
        if text.startswith("@"):
            if len(text) == 1:
                self.error(path, "a named location needs a name after '@'")
                return None
            return "named", text
        if not text.startswith("/"):
            self.error(
                path,
                f"a path must start with '/' (or be '= /x', '^~ /x', '~ regex', "
                f"'~* regex', '@name'), got {text!r}",
            )
            return None
        return "prefix", text

    def static_handler(
        self, spec: Mapping[str, Any], path: str, match: MatchKind
    ) -> StaticHandler | None:
        if "root" in spec and "alias" in spec:
            self.error(_join(path, "alias"), "root and alias are exclusive; use one")
            return None
        key = "root" if "root" in spec else "alias"
        if key == "alias" and match in ("regex", "regex_icase", "named"):
            self.error(
                _join(path, "alias"), f"alias cannot be used in a {match} location; use root"
            )
            return None
        directory = self.directory(spec[key], _join(path, key), keep_slash=key == "alias")
        if directory is None:
            return None
        index: tuple[str, ...] = self.field(spec, "index", path, _string_tuple, ("index.html",))
        try_files = self.try_files(spec.get("try_files"), _join(path, "try_files"))
        return StaticHandler(
            root=directory if key == "root" else None,
            alias=directory if key == "alias" else None,
            index=index,
            try_files=try_files,
            autoindex=self.field(spec, "autoindex", path, _autoindex_off, False),
            gzip_static=self.field(spec, "gzip_static", path, _bool, False),
            expires=self.field(spec, "expires", path, _expires, None),
            open_file_cache=self.open_file_cache(spec, path),
            allow_symlinks_outside=self.field(spec, "allow_symlinks_outside", path, _bool, False),
        )

    def directory(self, node: object, path: str, *, keep_slash: bool = False) -> str | None:
        if not isinstance(node, str) or not node:
            self.error(path, f"expected a directory path, got {_kind(node)}")
            return None
        had_slash = keep_slash and node.endswith("/")
        directory = os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(node)))
        if self.check_paths:
            if not os.path.exists(directory):
                self.error(path, "directory does not exist")
                return None
            if not os.path.isdir(directory):
                self.error(path, "not a directory")
                return None
        # An alias keeps its trailing slash: alias maps prefix -> directory
        # textually, and the static handler needs to know which form was written.
        if had_slash and not directory.endswith("/"):
            directory += "/"
        return directory

    def try_files(self, node: object, path: str) -> tuple[str, ...]:
        if node is None:
            return ()
        if isinstance(node, str):
            items: list[Any] = node.split()
        elif isinstance(node, list):
            items = node
        else:
            self.error(path, f"expected a list like [$uri, $uri/, /index.html], got {_kind(node)}")
            return ()
        if len(items) < 2:
            self.error(path, "needs at least two entries: files to try, then a fallback")
            return ()
        entries = []
        for i, item in enumerate(items):
            item_path = f"{path}[{i}]"
            if not isinstance(item, str) or not item:
                self.error(item_path, f"expected a string, got {_kind(item)}")
                continue
            entries.append(item)
            last = i == len(items) - 1
            if item.startswith("="):
                code = item[1:]
                if not last:
                    self.error(item_path, f"{item!r} is only allowed as the last entry")
                elif not (code.isdigit() and 100 <= int(code) <= 999):
                    self.error(item_path, f"invalid status code {item!r}")
            elif item.startswith("@"):
                if not last:
                    self.error(item_path, f"{item!r} is only allowed as the last entry")
            elif not item.startswith(("/", "$")):
                self.error(item_path, f"{item!r} must start with '/', '$', '=' or '@'")
            else:
                bad = unknown_variables(item)
                if bad:
                    self.error(item_path, f"unknown variable ${bad[0]}")
        return tuple(entries)

    def open_file_cache(self, spec: Mapping[str, Any], path: str) -> OpenFileCache | None:
        node = spec.get("open_file_cache")
        key_path = _join(path, "open_file_cache")
        if node is None or node is False or node == "off":
            return None
        if node is True:
            return OpenFileCache()
        cache_spec = self.mapping(
            node, key_path, ("max", "inactive", "valid", "min_uses", "errors")
        )
        if cache_spec is None:
            return None
        return OpenFileCache(
            max=self.field(cache_spec, "max", key_path, _int_at_least(1), 1000),
            inactive=self.field(cache_spec, "inactive", key_path, parse_duration, 60.0),
            valid=self.field(cache_spec, "valid", key_path, parse_duration, 60.0),
            min_uses=self.field(cache_spec, "min_uses", key_path, _int_at_least(1), 1),
            errors=self.field(cache_spec, "errors", key_path, _bool, False),
        )

    def proxy_handler(
        self, spec: Mapping[str, Any], path: str, names: _Names
    ) -> ProxyHandler | None:
        upstream = spec["proxy"]
        if not isinstance(upstream, str) or not upstream:
            self.error(_join(path, "proxy"), f"expected an upstream name, got {_kind(upstream)}")
            return None
        if upstream not in names.upstreams:
            self.error(
                _join(path, "proxy"),
                f"no upstream named {upstream!r}{_suggest(upstream, names.upstreams)}",
            )
            return None
        host_header = self.field(spec, "host_header", path, _str, "$host")
        bad = unknown_variables(host_header)
        if bad:
            self.error(_join(path, "host_header"), f"unknown variable ${bad[0]}")
        return ProxyHandler(
            upstream=upstream,
            protocol=self.field(spec, "protocol", path, _choice(("uwsgi", "http")), "uwsgi"),
            params=self.params(spec.get("params"), _join(path, "params")),
            connect_timeout=self.field(spec, "proxy_connect_timeout", path, parse_duration, 60.0),
            send_timeout=self.field(spec, "proxy_send_timeout", path, parse_duration, 60.0),
            read_timeout=self.field(spec, "proxy_read_timeout", path, parse_duration, 60.0),
            ignore_client_abort=self.field(spec, "ignore_client_abort", path, _bool, False),
            next_upstream=self.field(
                spec, "next_upstream", path, _next_upstream, ("error", "timeout")
            ),
            next_upstream_tries=self.field(spec, "next_upstream_tries", path, _int_at_least(0), 0),
            next_upstream_timeout=self.field(
                spec, "next_upstream_timeout", path, parse_duration, 0.0
            ),
            host_header=host_header,
            modifier1=self.field(spec, "modifier1", path, _int_between(0, 255), 0),
            cache=self.cache(spec.get("cache"), _join(path, "cache")),
        )

    def params(self, node: object, path: str) -> tuple[ProxyParam, ...]:
        if node is None:
            return ()
        if not isinstance(node, dict):
            self.error(path, f"expected a mapping of NAME: value, got {_kind(node)}")
            return ()
        params = []
        for name, value in node.items():
            item_path = _join(path, str(name))
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                self.error(item_path, "a param name is letters, digits, '_', '-' or '.'")
                continue
            if_not_empty = False
            if isinstance(value, dict):
                spec = self.mapping(value, item_path, ("value", "if_not_empty"))
                if spec is None:
                    continue
                if_not_empty = self.field(spec, "if_not_empty", item_path, _bool, False)
                value = spec.get("value", "")
            if isinstance(value, bool) or value is None:
                self.error(item_path, f"expected a string value, got {_kind(value)}")
                continue
            if isinstance(value, int | float):
                value = str(value)
            if not isinstance(value, str):
                self.error(item_path, f"expected a string value, got {_kind(value)}")
                continue
            bad = unknown_variables(value)
            if bad:
                self.error(item_path, f"unknown variable ${bad[0]}")
                continue
            params.append(ProxyParam(name=name, value=value, if_not_empty=if_not_empty))
        return tuple(params)

    def cache(self, node: object, path: str) -> CacheSettings | None:
        if node is None or node is False or node == "off":
            return None
        if node is True:
            return CacheSettings()
        spec = self.mapping(node, path, ("valid", "max_size", "max_entry_size"))
        if spec is None:
            return None
        valid: tuple[tuple[int, float], ...] = CacheSettings().valid
        if "valid" in spec:
            valid_path = _join(path, "valid")
            raw = spec["valid"]
            if not isinstance(raw, dict) or not raw:
                self.error(valid_path, f"expected a mapping of status: duration, got {_kind(raw)}")
            else:
                entries = []
                for status, duration in raw.items():
                    item_path = _join(valid_path, str(status))
                    if not (isinstance(status, int) and status in (200, 301, 302, 404)):
                        self.error(item_path, "only 200, 301, 302 and 404 responses are cached")
                        continue
                    try:
                        entries.append((status, parse_duration(duration)))
                    except ValueError as exc:
                        self.error(item_path, str(exc))
                valid = tuple(entries)
        return CacheSettings(
            valid=valid,
            max_size=self.field(spec, "max_size", path, parse_size, 10 * MIB),
            max_entry_size=self.field(spec, "max_entry_size", path, parse_size, MIB),
        )

    def return_handler(self, node: object, path: str) -> ReturnHandler | None:
        if isinstance(node, int) and not isinstance(node, bool):
            node = {"status": node}
        spec = self.mapping(node, path, ("status", "body", "location"))
        if spec is None:
            return None
        if "status" not in spec:
            self.error(path, "missing required key 'status'")
            return None
        status = self.field(spec, "status", path, _status, None)
        if status is None:
            return None
        body = self.field(spec, "body", path, _str, None)
        location = self.field(spec, "location", path, _str, None)
        if status in _REDIRECT_STATUSES:
            if location is None:
                self.error(path, f"a {status} redirect needs 'location'")
                return None
            if body is not None:
                self.error(_join(path, "body"), "a redirect has a location, not a body")
        elif location is not None:
            self.error(
                _join(path, "location"),
                f"only redirects ({', '.join(map(str, _REDIRECT_STATUSES))}) take a location",
            )
        return ReturnHandler(status=status, body=body, location=location)

    # -- protection -------------------------------------------------------------

    def access_rules(self, node: object, path: str) -> tuple[AccessRule, ...]:
        rules = []
        for i, item in enumerate(self.list_of(node)):
            item_path = f"{path}[{i}]"
            if isinstance(item, dict) and len(item) == 1:
                ((verb, target),) = item.items()
                text = f"{verb} {target}"
            elif isinstance(item, str):
                text = item
            else:
                self.error(
                    item_path,
                    f"expected 'allow CIDR', 'deny CIDR' or 'deny all', got {_kind(item)}",
                )
                continue
            verb, _, target = text.strip().partition(" ")
            target = target.strip()
            if verb not in ("allow", "deny") or not target:
                self.error(
                    item_path, f"expected 'allow CIDR', 'deny CIDR' or 'deny all', got {text!r}"
                )
                continue
            if target == "all":
                rules.append(AccessRule(allow=verb == "allow"))
                continue
            try:
                rules.append(AccessRule(allow=verb == "allow", network=_parse_network(target)))
            except ValueError as exc:
                self.error(item_path, str(exc))
        return tuple(rules)

    def limit_req_rules(self, node: object, path: str, names: _Names) -> tuple[LimitReqRule, ...]:
        rules = []
        items = self.list_of(node)
        for i, item in enumerate(items):
            item_path = f"{path}[{i}]" if isinstance(node, list) else path
            spec = self.mapping(item, item_path, ("zone", "burst", "nodelay", "delay", "status"))
            if spec is None:
                continue
            zone = self.zone_reference(spec, item_path, names.req_zones, "limit_req_zones")
            if zone is None:
                continue
            nodelay = self.field(spec, "nodelay", item_path, _bool, False)
            if nodelay and "delay" in spec:
                self.error(_join(item_path, "delay"), "nodelay and delay are exclusive")
            rules.append(
                LimitReqRule(
                    zone=zone,
                    burst=self.field(spec, "burst", item_path, _int_at_least(0), 0),
                    nodelay=nodelay,
                    delay=self.field(spec, "delay", item_path, _int_at_least(0), 0),
                    status=self.field(spec, "status", item_path, _error_status, 503),
                )
            )
        return tuple(rules)

    def limit_conn_rules(self, node: object, path: str, names: _Names) -> tuple[LimitConnRule, ...]:
        rules = []
        for i, item in enumerate(self.list_of(node)):
            item_path = f"{path}[{i}]" if isinstance(node, list) else path
            spec = self.mapping(item, item_path, ("zone", "max", "status"))
            if spec is None:
                continue
            zone = self.zone_reference(spec, item_path, names.conn_zones, "limit_conn_zones")
            if zone is None:
                continue
            if "max" not in spec:
                self.error(item_path, "missing required key 'max' (connections per client)")
                continue
            rules.append(
                LimitConnRule(
                    zone=zone,
                    max=self.field(spec, "max", item_path, _int_at_least(1), 1),
                    status=self.field(spec, "status", item_path, _error_status, 503),
                )
            )
        return tuple(rules)

    def zone_reference(
        self, spec: Mapping[str, Any], path: str, zones: Collection[str], section: str
    ) -> str | None:
        zone = spec.get("zone")
        if zone is None:
            self.error(path, "missing required key 'zone'")
            return None
        if not isinstance(zone, str) or zone not in zones:
            self.error(
                _join(path, "zone"),
                f"no zone {zone!r} in {section}{_suggest(str(zone), zones)}",
            )
            return None
        return zone


class _Names(NamedTuple):
    """Names defined at top level that locations may reference."""

    upstreams: set[str]
    req_zones: set[str]
    conn_zones: set[str]


# --- field converters: raise ValueError with a user-facing message ---------------


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("on", "off"):  # nginx spelling, if quoted so YAML kept it a string
        return value == "on"
    raise ValueError(f"expected true or false, got {value!r}")



def _autoindex_off(value: object) -> bool:
    # Directory listings are not built; accepting "on" and answering 403 would lie.
    if _bool(value):
        raise ValueError("directory listings are not implemented: use index or try_files")
    return False

def _str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {_kind(value)}")


def _int_at_least(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return convert


def _int_between(low: int, high: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        number = _int_at_least(low)(value)
        if number > high:
            raise ValueError(f"must be at most {high}, got {number}")
        return number

    return convert


def _status(value: object) -> int:
    # 444 is nginx's "close the connection without a response".
    return _int_between(100, 599)(value)


def _error_status(value: object) -> int:
    return _int_between(400, 599)(value)


def _choice(choices: Sequence[str]) -> Callable[[object], Any]:
    def convert(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        hint = _suggest(value, choices) if isinstance(value, str) else ""
        raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}{hint}")

    return convert


def _worker_processes(value: object) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    try:
        return _int_at_least(1)(value)
    except ValueError:
        raise ValueError(f"expected a number of processes or auto, got {value!r}") from None


def _duration_or_off(value: object) -> float:
    if value is False or value == "off":
        return 0.0
    return parse_duration(value)


def _header_name(value: object) -> str:
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
        return value
    raise ValueError(f"expected an HTTP header name, got {value!r}")


def _string_tuple(value: object) -> tuple[str, ...]:
    items = value.split() if isinstance(value, str) else value
    if isinstance(items, list) and items and all(isinstance(i, str) and i for i in items):
        return tuple(items)
    raise ValueError(f"expected a file name or a list of them, got {value!r}")


def _header_buffers(value: object) -> HeaderBuffers:
    # nginx writes "4 8k"; a two-item list or a {number, size} mapping also works.
    if isinstance(value, str):
        parts: Any = value.split()
    elif isinstance(value, list):
        parts = value
    elif isinstance(value, dict) and set(value) <= {"number", "size"}:
        parts = [value.get("number", 4), value.get("size", "8k")]
    else:
        parts = None
    if not parts or len(parts) != 2:
        raise ValueError(f"expected 'NUMBER SIZE' like '4 8k', got {value!r}")
    number = int(parts[0]) if isinstance(parts[0], str) and parts[0].isdigit() else parts[0]
    number = _int_at_least(1)(number)
    size = parse_size(parts[1])
    if size < 1:
        raise ValueError("the buffer size must be positive")
    return HeaderBuffers(number=number, size=size)


def _expires(value: object) -> Expires | None:
    if value is False or value == "off" or value is None:
        return None
    if value == "max":
        return Expires("max")
    if value == "epoch":
        return Expires("epoch")
    try:
        return Expires("after", int(parse_duration(value, allow_negative=True)))
    except ValueError:
        raise ValueError(
            f"expected off, epoch, max or a duration like 30d, got {value!r}"
        ) from None


def _next_upstream(value: object) -> tuple[str, ...]:
    items = value.split() if isinstance(value, str) else value
    if value is False:
        items = ["off"]
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected a list of conditions like [error, timeout], got {value!r}")
    for item in items:
        if item not in _NEXT_UPSTREAM_VALUES:
            hint = _suggest(item, _NEXT_UPSTREAM_VALUES) if isinstance(item, str) else ""
            raise ValueError(f"unknown condition {item!r}{hint}")
    if "off" in items:
        if len(items) > 1:
            raise ValueError("off cannot be combined with other conditions")
        return ()
    return tuple(items)


# --- YAML ----------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no stubs
    """SafeLoader that refuses duplicate keys, which PyYAML would silently let the last win."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue  # unhashable: the builder reports non-string keys
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_issue(exc: yaml.YAMLError, source: str) -> ConfigIssue:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    return ConfigIssue("", f"{where}: invalid YAML: {problem}")


# --- public entry points -------------------------------------------------------


def load_config(path: str | os.PathLike[str], *, check_paths: bool = True) -> EdgeConfig:
    """Read and validate a YAML file.  Relative paths inside resolve against its directory."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigErrors([ConfigIssue("", f"{filename}: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigErrors(
            [ConfigIssue("", f"{filename}: not UTF-8 text ({exc.reason})")]
        ) from None
    return parse_config(
        text,
        base_dir=os.path.dirname(os.path.abspath(filename)),
        source=os.path.abspath(filename),
        check_paths=check_paths,
    )


def parse_config(
    text: str,
    *,
    base_dir: str | None = None,
    source: str | None = None,
    check_paths: bool = True,
) -> EdgeConfig:
    """Validate YAML text; relative paths resolve against ``base_dir`` (default: the cwd)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigErrors([_yaml_issue(exc, source or "<config>")]) from None
    return build_config(data, base_dir=base_dir, source=source, check_paths=check_paths)


def build_config(
    data: object,
    *,
    base_dir: str | None = None,
    source: str | None = None,
    check_paths: bool = True,
) -> EdgeConfig:
    """Validate already-parsed YAML data (a dict) into an ``EdgeConfig``."""
    builder = _Builder(base_dir=base_dir or os.getcwd(), check_paths=check_paths)
    config = builder.build(data, source)
    if builder.issues:
        raise ConfigErrors(_in_document_order(builder.issues, data))
    return config


def _in_document_order(issues: list[ConfigIssue], data: object) -> list[ConfigIssue]:
    """Sections are built in dependency order (zones and upstreams before the servers
    that use them); report issues in the order their top-level keys appear instead."""
    if not isinstance(data, dict):
        return issues
    position = {key: index for index, key in enumerate(data)}

    def top_key(issue: ConfigIssue) -> int:
        head = re.split(r"[.\[]", issue.path, maxsplit=1)[0]
        return position.get(head, -1)

    return sorted(issues, key=top_key)


QUICK_UPSTREAM = "backend"


def quick_config(
    *,
    listen: str = "127.0.0.1:8080",
    proxies: Sequence[str] = (),
    root: str | None = None,
    statics: Sequence[str] = (),
    check_paths: bool = True,
) -> EdgeConfig:
    """The config behind ``edge --listen ADDR [--proxy URL]... [--root DIR] [--static P=DIR]...``.

    ``--proxy uwsgi://host:port`` (or ``http://``, or ``uwsgi://unix:/path``)
    may repeat: the backends form one round-robin upstream serving ``/``.
    ``--root DIR`` serves ``/`` from files instead, so it excludes ``--proxy``.
    ``--static /static=DIR`` adds prefix locations, longest prefix winning.
    Issues are reported against the flag, like ``--proxy[1]: ...``.
    """
    builder = _Builder(base_dir=os.getcwd(), check_paths=check_paths)
    try:
        listen_at = parse_listen(listen)
    except ValueError as exc:
        builder.error("--listen", str(exc))
        listen_at = Listen(host="127.0.0.1", port=8080)

    locations: list[Location] = []
    prefixes: dict[str, str] = {}
    for i, item in enumerate(statics):
        flag = f"--static[{i}]" if len(statics) > 1 else "--static"
        prefix, sep, directory = item.partition("=")
        if not sep or not prefix.startswith("/") or not directory:
            builder.error(flag, f"expected PREFIX=DIR like /static=./static, got {item!r}")
            continue
        # "/static" and "/static/" mean the same mount; a trailing slash on both
        # sides keeps alias from matching "/staticfoo" or escaping via "/static..".
        prefix = prefix.rstrip("/") + "/"
        if prefix in prefixes:
            builder.error(flag, f"{prefix} is already served by {prefixes[prefix]}")
            continue
        prefixes[prefix] = flag
        alias = builder.directory(directory.rstrip("/") + "/", flag, keep_slash=True)
        if alias is None:
            continue
        handler = (
            StaticHandler(alias=alias)
            if prefix != "/"
            else StaticHandler(root=alias.rstrip("/") or "/")
        )
        locations.append(Location(path=prefix, match="prefix", handler=handler))

    upstreams: tuple[Upstream, ...] = ()
    if root is not None and proxies:
        builder.error(
            "--root", "--root and --proxy both serve '/'; serve files with --static PREFIX=DIR"
        )
    elif root is not None:
        if "/" in prefixes:
            builder.error("--root", f"'/' is already served by {prefixes['/']}")
        root_dir = builder.directory(root, "--root")
        if root_dir is not None:
            locations.append(
                Location(
                    path="/",
                    match="prefix",
                    handler=StaticHandler(root=root_dir.rstrip("/") or "/"),
                )
            )
    elif proxies:
        protocols = set()
        servers = []
        for i, url in enumerate(proxies):
            flag = f"--proxy[{i}]" if len(proxies) > 1 else "--proxy"
            scheme, sep, address = url.partition("://")
            if not sep or scheme not in ("uwsgi", "http"):
                builder.error(flag, f"expected uwsgi://HOST:PORT or http://HOST:PORT, got {url!r}")
                continue
            address = address.rstrip("/")
            try:
                endpoint = parse_endpoint(address)
            except ValueError as exc:
                builder.error(flag, str(exc))
                continue
            protocols.add(scheme)
            servers.append(UpstreamServer(endpoint=endpoint))
        if len(protocols) > 1:
            builder.error(
                "--proxy", "all backends must use the same protocol (uwsgi:// or http://)"
            )
        if servers:
            upstreams = (Upstream(name=QUICK_UPSTREAM, servers=tuple(servers)),)
            protocol: Protocol = "http" if protocols == {"http"} else "uwsgi"
            if "/" in prefixes:
                builder.error("--proxy", f"'/' is already served by {prefixes['/']}")
            locations.append(
                Location(
                    path="/",
                    match="prefix",
                    handler=ProxyHandler(upstream=QUICK_UPSTREAM, protocol=protocol),
                )
            )
    elif not statics:
        builder.error("", "nothing to serve: give --proxy URL, --root DIR or --static PREFIX=DIR")

    if builder.issues:
        raise ConfigErrors(builder.issues)
    server = Server(listen=(listen_at,), locations=tuple(locations))
    return EdgeConfig(servers=(server,), upstreams=upstreams)
