"""How nginx users write values: sizes, durations, addresses, ``try_files`` ...

Each function takes one YAML value and returns the schema's value for it, or
raises ``ValueError`` with a message for the user (``Invalid`` when a list has
several bad entries).  Pure: no I/O beyond ``directory``'s existence check, no
knowledge of where in the document the value is.  ``edge.config.load`` calls
these by type; the ``parse_*`` functions are also the CLI's and the tests'.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Literal, get_args

from edge.config.issues import NOTHING, Invalid, Issue, issues_of, suggest
from edge.config.schema import (
    AccessRule,
    Endpoint,
    ErrorPage,
    Expires,
    GzipProxied,
    HeaderBuffers,
    IPNetwork,
    Listen,
    MatchKind,
    NextUpstreamCondition,
)
from edge.variables import unknown

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


_LISTEN_OPTIONS = ("ssl", "http2")


def parse_listen(value: object) -> Listen:
    """``8000``, ``"127.0.0.1:8000"``, ``"*:8000"``, ``"[::]:8000"`` -> ``Listen``.

    nginx's options follow the address (``"443 ssl http2"``), or the mapping form
    names them: ``{address: 443, ssl: true, http2: true}``.
    """
    if isinstance(value, dict):
        return _listen_mapping(value)
    if isinstance(value, str) and len(value.split()) > 1:
        address, *options = value.split()
        for option in options:
            if option not in _LISTEN_OPTIONS:
                hint = suggest(option, _LISTEN_OPTIONS)
                raise ValueError(f"unknown listen option {option!r}{hint}")
        listen = _listen_address(address)
        return Listen(listen.host, listen.port, **dict.fromkeys(options, True))
    return _listen_address(value)


def _listen_mapping(value: dict[Any, Any]) -> Listen:
    issues = [
        Issue((key,), f"unknown key{suggest(str(key), ('address', *_LISTEN_OPTIONS))}")
        for key in value
        if key not in ("address", *_LISTEN_OPTIONS)
    ]
    if "address" not in value:
        issues.append(Issue((), "missing required key 'address' (a port or host:port)"))
    listen = Listen()
    flags = {}
    for key in _LISTEN_OPTIONS:
        if key in value:
            try:
                flags[key] = boolean(value[key])
            except ValueError as exc:
                issues.append(Issue((key,), str(exc)))
    if "address" in value:
        try:
            listen = _listen_address(value["address"])
        except ValueError as exc:
            issues.append(Issue(("address",), str(exc)))
    if issues:
        raise Invalid(issues)
    return Listen(listen.host, listen.port, **flags)


def _listen_address(value: object) -> Listen:
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


def unknown_variables(text: str) -> list[str]:
    """The ``$variables`` in ``text`` that have no value (the one table is edge.variables)."""
    return unknown(text)


def kind(node: object) -> str:
    """How a YAML value is described in errors: "a number", "a mapping", "nothing"."""
    if node is None:
        return "nothing"
    if isinstance(node, bool):
        return "a boolean"
    if isinstance(node, int | float):
        return "a number"
    for types, name in ((str, "a string"), (list, "a list"), (dict, "a mapping")):
        if isinstance(node, types):
            return name
    return type(node).__name__


def is_int(node: object) -> bool:
    return isinstance(node, int) and not isinstance(node, bool)


# --- scalars ---------------------------------------------------------------------------------


def boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("on", "off"):  # nginx spelling, if quoted so YAML kept it a string
        return value == "on"
    raise ValueError(f"expected true or false, got {value!r}")


def integer(value: object) -> int:
    if not is_int(value):
        raise ValueError(f"expected an integer, got {value!r}")
    return value  # type: ignore[return-value]


def number(value: object) -> float:
    if not is_int(value) and not isinstance(value, float):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def string(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string, got {kind(value)}")


def network(value: object) -> IPNetwork:
    if not isinstance(value, str):
        raise ValueError(f"expected an address or CIDR, got {kind(value)}")
    return _parse_network(value)


def file(text: str, base_dir: str, *, check_paths: bool) -> str:
    """``text`` resolved against ``base_dir``; with ``check_paths``, a file we can read."""
    path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(text)))
    if check_paths:
        if not os.path.exists(path):
            raise ValueError(f"{path}: no such file")
        if not os.path.isfile(path):
            raise ValueError(f"{path}: not a file")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read ({exc.strerror})") from None
    return path


def directory(text: str, base_dir: str, *, check_paths: bool, keep_slash: bool = False) -> str:
    """``text`` resolved against ``base_dir``; with ``check_paths``, it must be a directory."""
    path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(text)))
    if check_paths:
        if not os.path.exists(path):
            raise ValueError("directory does not exist")
        if not os.path.isdir(path):
            raise ValueError("not a directory")
    # An alias keeps its trailing slash: alias maps prefix -> directory
    # textually, and the static handler needs to know which form was written.
    if keep_slash and text.endswith("/") and not path.endswith("/"):
        path += "/"
    return path


# --- values with a grammar of their own ------------------------------------------------------


def location_path(value: object) -> tuple[MatchKind, str]:
    """A location's ``path`` with nginx's modifier: ``= /x``, ``^~ /x``, ``~ re``, ``@name``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a location path, got {kind(value)}")
    text = value.strip()
    modifiers: tuple[tuple[str, MatchKind], ...] = (
        ("^~", "prefix_no_regex"),
        ("~*", "regex_icase"),
        ("=", "exact"),
        ("~", "regex"),
    )
    for prefix, match in modifiers:
        if text.startswith(prefix):
            pattern = text[len(prefix) :].strip()
            if not pattern:
                raise ValueError(f"{prefix!r} needs a pattern after it")
            if match in ("regex", "regex_icase"):
                _compile(pattern)
            elif not pattern.startswith("/"):
                raise ValueError(f"a path must start with '/', got {pattern!r}")
            return match, pattern
    if text.startswith("@"):
        if len(text) == 1:
            raise ValueError("a named location needs a name after '@'")
        return "named", text
    if not text.startswith("/"):
        raise ValueError(
            f"a path must start with '/' (or be '= /x', '^~ /x', '~ regex', "
            f"'~* regex', '@name'), got {text!r}"
        )
    return "prefix", text


def _compile(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex: {exc}") from None


def server_name(value: object) -> str:
    """A host name, lower-cased without its trailing dot; ``~regex`` names stay as written."""
    if not isinstance(value, str):
        raise ValueError(f"expected a host name, got {kind(value)}")
    if value.startswith("~"):
        _compile(value[1:])
        return value
    return value.lower().rstrip(".")


def access_rule(value: object) -> AccessRule:
    """``allow CIDR``, ``deny all``, or the mapping form ``{allow: CIDR}``."""
    if isinstance(value, dict) and len(value) == 1:
        ((verb, target),) = value.items()
        text = f"{verb} {target}"
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError(f"expected 'allow CIDR', 'deny CIDR' or 'deny all', got {kind(value)}")
    verb, _, target = text.strip().partition(" ")
    target = target.strip()
    if verb not in ("allow", "deny") or not target:
        raise ValueError(f"expected 'allow CIDR', 'deny CIDR' or 'deny all', got {text!r}")
    if target == "all":
        return AccessRule(allow=verb == "allow")
    return AccessRule(allow=verb == "allow", network=_parse_network(target))


def header_buffers(value: object) -> HeaderBuffers:
    """nginx writes ``4 8k``; a two-item list or a ``{number, size}`` mapping also works."""
    if isinstance(value, str):
        parts: Any = value.split()
    elif isinstance(value, list):
        parts = value
    elif isinstance(value, dict) and set(value) <= {"number", "size"}:
        default = HeaderBuffers()
        parts = [value.get("number", default.number), value.get("size", default.size)]
    else:
        parts = None
    if not parts or len(parts) != 2:
        raise ValueError(f"expected 'NUMBER SIZE' like '4 8k', got {value!r}")
    count = integer(int(parts[0]) if isinstance(parts[0], str) and parts[0].isdigit() else parts[0])
    if count < 1:
        raise ValueError(f"must be at least 1, got {count}")
    size = parse_size(parts[1])
    if size < 1:
        raise ValueError("the buffer size must be positive")
    return HeaderBuffers(number=count, size=size)


def expires(value: object) -> Expires:
    """nginx ``expires``: ``max``, ``epoch`` or a duration (negative: ``no-cache``)."""
    if value in ("max", "epoch"):
        return Expires(value)
    try:
        return Expires("after", int(parse_duration(value, allow_negative=True)))
    except ValueError:
        raise ValueError(
            f"expected off, epoch, max or a duration like 30d, got {value!r}"
        ) from None


def index(value: object) -> tuple[str, ...]:
    items = value.split() if isinstance(value, str) else value
    if isinstance(items, list) and items and all(isinstance(i, str) and i for i in items):
        return tuple(items)
    raise ValueError(f"expected a file name or a list of them, got {value!r}")


def try_files(value: object) -> tuple[str, ...]:
    """nginx ``try_files``: files to try (``$uri``, ``/index.html``), then a fallback
    (a file, ``=404`` or ``@name``), as a list or one string."""
    if value is None:
        return ()
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list like [$uri, $uri/, /index.html], got {kind(value)}")
    if len(items) < 2:
        raise ValueError("needs at least two entries: files to try, then a fallback")
    issues = []
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            message = f"expected a string, got {kind(item)}"
        elif item.startswith(("=", "@")) and i < len(items) - 1:
            message = f"{item!r} is only allowed as the last entry"
        elif item.startswith("="):
            if item[1:].isdigit() and 100 <= int(item[1:]) <= 999:
                continue
            message = f"invalid status code {item!r}"
        elif item.startswith("@"):
            continue
        elif not item.startswith(("/", "$")):
            message = f"{item!r} must start with '/', '$', '=' or '@'"
        elif bad := unknown_variables(item):
            message = f"unknown variable ${bad[0]}"
        else:
            continue
        issues.append(Issue((i,), message))
    if issues:
        raise Invalid(issues)
    return tuple(items)


NEXT_UPSTREAM_VALUES = (*get_args(NextUpstreamCondition), "off")


def next_upstream(value: object) -> tuple[str, ...]:
    """nginx ``proxy_next_upstream``: conditions as a list or one string, or ``off``."""
    items = ["off"] if value is False else value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected a list of conditions like [error, timeout], got {value!r}")
    for item in items:
        if item not in NEXT_UPSTREAM_VALUES:
            hint = suggest(item, NEXT_UPSTREAM_VALUES) if isinstance(item, str) else ""
            raise ValueError(f"unknown condition {item!r}{hint}")
    if "off" in items:
        if len(items) > 1:
            raise ValueError("off cannot be combined with other conditions")
        return ()
    return tuple(items)


def cache_valid(value: object) -> tuple[tuple[int, float], ...]:
    """``{200: 10s, 404: 1s}``: how long each cacheable status is kept."""
    if not isinstance(value, dict) or not value:
        got = "an empty mapping" if value == {} else kind(value)
        raise ValueError(f"expected a mapping of status: duration, got {got}")
    entries, issues = [], []
    for status, duration in value.items():
        if not (is_int(status) and status in (200, 301, 302, 404)):
            issues.append(Issue((str(status),), "only 200, 301, 302 and 404 responses are cached"))
            continue
        try:
            entries.append((status, parse_duration(duration)))
        except ValueError as exc:
            issues.extend(issues_of(exc, (str(status),)))
    if issues:
        raise Invalid(issues, tuple(entries) if entries else NOTHING)
    return tuple(entries)


def worker_processes(value: object) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if is_int(value) and value >= 1:  # type: ignore[operator]
        return value  # type: ignore[return-value]
    raise ValueError(f"expected a number of processes or auto, got {value!r}")


_ERROR_PAGE_FORM = "'CODE... [=RESPONSE] URI' like '500 502 =200 /50x.html'"


def error_page(value: object) -> ErrorPage:
    """nginx ``error_page 404 /404.html``, ``500 502 =200 /50x.html``, ``404 = @app``,
    ``403 http://example.com/forbidden`` (a 302) or ``404 =301 https://...``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected {_ERROR_PAGE_FORM}, got {kind(value)}")
    words = value.split()
    codes: list[int] = []
    while words and words[0].isdigit():
        code = int(words.pop(0))
        if not 300 <= code <= 599:
            raise ValueError(f"value {code} must be between 300 and 599")
        if code == 499:
            raise ValueError("value 499 must be between 300 and 599, except 499 (nginx's own)")
        codes.append(code)
    if not codes:
        raise ValueError(f"expected {_ERROR_PAGE_FORM}, got {value!r}")
    response: int | None = None
    keep = False
    if words and words[0].startswith("="):
        rewrite = words.pop(0)[1:]
        if not rewrite:
            keep = True
        elif rewrite.isdigit() and 100 <= int(rewrite) <= 599:
            response = int(rewrite)
        else:
            raise ValueError(f"invalid response code {rewrite!r} after '=' in {value!r}")
    if len(words) != 1:
        what = "a target URI, @name or URL" if not words else "one target"
        raise ValueError(f"expected {what} after the codes in {value!r}")
    target = words[0]
    if not target.startswith(("/", "@", "http://", "https://", "$")):
        raise ValueError(f"target {target!r} must be a URI (/...), a @name or an absolute URL")
    if bad := unknown_variables(target):
        raise ValueError(f"unknown variable ${bad[0]}")
    page = ErrorPage(tuple(codes), target, response, keep)
    redirects = (301, 302, 303, 307, 308)
    if page.is_redirect and (keep or (response is not None and response not in redirects)):
        raise ValueError(
            f"a URL target is a redirect: only ={', ='.join(map(str, redirects))} "
            f"(or no code: 302) can send {target}"
        )
    return page


def gzip_types(value: object) -> tuple[str, ...]:
    """nginx ``gzip_types``: MIME types as a list or one string; ``*`` is any type.
    text/html is always compressed (as nginx)."""
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(
            f"expected MIME types like [text/css, application/json], got {kind(value)}"
        )
    for item in items:
        if not isinstance(item, str) or (item != "*" and not re.fullmatch(r"[!-~]+/[!-~]+", item)):
            raise ValueError(f"expected a MIME type like text/css or *, got {item!r}")
    types = tuple(dict.fromkeys(item.lower() for item in items))
    return types if "text/html" in types else ("text/html", *types)


GZIP_PROXIED_VALUES = get_args(GzipProxied)


def gzip_proxied(value: object) -> tuple[str, ...]:
    """nginx ``gzip_proxied``: conditions as a list or one string; ``off`` is ()."""
    items = ["off"] if value is False else value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError(f"expected gzip_proxied conditions like [expired, auth], got {value!r}")
    for item in items:
        if item not in GZIP_PROXIED_VALUES:
            hint = suggest(item, GZIP_PROXIED_VALUES) if isinstance(item, str) else ""
            raise ValueError(f"unknown gzip_proxied value {item!r}{hint}")
    if "off" in items:
        if len(items) > 1:
            raise ValueError("off cannot be combined with other values")
        return ()
    return tuple(items)
