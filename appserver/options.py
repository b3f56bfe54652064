"""The appserver's option table, and the one function that turns option entries into a config.

Theory of operation
-------------------
``OPTIONS`` is data: one ``Option`` per uWSGI option we implement, under uWSGI's
spelling, with its aliases and short flag.  ``appserver.ini`` reads ``[uwsgi]``
sections into ``Entry(key, value, source)`` triples and ``appserver.cli``
generates its argparse parser from the same table, so an option exists in ini
files exactly when it exists on the command line.  Both hand their entries, in
order, to ``build_config``, which is the only place that parses and validates:

1. each entry's key is looked up: a table option is parsed by its ``ValueType``
   (multi options accumulate, the last single value wins, as in uWSGI); an
   ``IGNORED`` option adds a one-line warning; an ``UNSUPPORTED`` one, or
   anything else, raises ``ConfigError``;
2. relative paths are made absolute.  Files the server process itself opens
   (``pidfile``, ``daemonize``, ``logto``, unix sockets, ``chdir``,
   ``virtualenv``) are relative to the directory appserver was started from.
   Files the application side uses (``wsgi-file``, ``mount`` files,
   ``static-map`` directories, ``pythonpath``, ``touch-reload``) are relative to
   ``chdir`` when it is set, because uWSGI has already changed directory when
   it opens them;
3. cross-option rules are checked (one listener at least, exactly one kind of
   application, files and directories exist) and soft problems become warnings
   (``listen`` above ``net.core.somaxconn``, a missing static directory).

Every error is one line: ``<file or flag>: <key>: <what is wrong>``.

Ignored options (accepted, one warning line each; see ``IGNORED`` for the reason
printed): plugin(s), thunder-lock, single-interpreter, auto-procname and the
procname family, memory-report, no-orphans, log-date, log-master, max-fd,
optimize, strict, need-app, py-autoreload, hook-master-start, cheaper*,
min-worker-lifetime, ignore-sigpipe, ignore-write-errors, disable-write-exception,
harakiri-verbose, wsgi-disable-file-wrapper, pep3333-input, post-buffering-bufsize,
thread-stacksize, cpu-affinity, reload-mercy, http-timeout, stats-http,
catch-exceptions.

Unsupported options (a ``ConfigError`` that says what to do instead; see
``UNSUPPORTED``): emperor, spooler, mule, cron, route*, cache*, the routers,
subscriptions, legion, offload-threads, gevent/async/ugreen/greenlet/asyncio,
https/ssl, fastcgi/scgi sockets, attach-daemon, master-fifo, zerg, carbon,
alarm, the other static-* options, limit-post, limit-as, logger*, log rotation,
chown-socket, umask, vhost, hooks and exec-*, config logic (for/if-*), and
other languages' plugins.
"""

from __future__ import annotations

import difflib
import grp
import os
import pwd
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, NamedTuple

from appserver.config import AppServerConfig, ConfigError
from appserver.log import parse_encoder, request_formatter

# Linux caps every listen() backlog at this value, silently (net.core.somaxconn).
SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"


class Entry(NamedTuple):
    """One option as written: its key as spelled, its value (None: bare flag), its origin."""

    key: str
    value: str | None
    source: str  # "uwsgi.ini" or "--processes"


# --------------------------------------------------------------------------
# Value types: parse a raw string (ValueError carries the message), and
# optionally make the paths inside a parsed value absolute.
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueType:
    name: str
    metavar: str
    parse: Callable[[str], Any]
    # What a bare flag (``--master``, ``master =`` or ``chmod-socket`` alone)
    # stands for; None means a value is required.
    bare: str | None = None
    # Rewrites the paths inside a parsed value given a base directory.
    resolve: Callable[[Any, str], Any] | None = None


def _absolute(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _parse_string(raw: str) -> str:
    if raw == "":
        raise ValueError("expected a value")
    return raw


def _parse_natural(raw: str) -> int:
    text = raw.strip()
    # str.isdigit alone would accept other scripts' digits; int() would accept "1_000".
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"expected an integer, got {raw!r}")
    return int(text)


def _parse_positive(raw: str) -> int:
    value = _parse_natural(raw)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


_TRUE = frozenset({"true", "1", "yes", "on", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "n"})


def _parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false, yes/no, on/off, 1/0), got {raw!r}")


def _parse_mode(raw: str) -> int:
    text = raw.strip().lower().removeprefix("0o")
    if not text or any(ch not in "01234567" for ch in text) or int(text, 8) > 0o7777:
        raise ValueError(f"expected an octal file mode such as 660, got {raw!r}")
    return int(text, 8)


def _parse_keepalive(raw: str) -> int:
    # uWSGI's http-keepalive is an on/off switch with an optional number; ours is
    # the idle timeout in seconds, so "on" means our default and "off" means 0.
    word = raw.strip().lower()
    if word in _TRUE - {"1"}:
        return 5
    if word in _FALSE - {"0"}:
        return 0
    return _parse_natural(raw)


def _parse_address(raw: str) -> str:
    """host:port, :port, [v6]:port, @abstract or a unix socket path."""
    address = raw.strip()
    if not address:
        raise ValueError("expected an address such as 127.0.0.1:3031, :8000 or /run/app.sock")
    if address.startswith("="):
        raise ValueError(f"shared-socket references such as {address!r} are not supported")
    if address.startswith("@") or ":" not in address:
        return address  # abstract-namespace or filesystem unix socket
    host, _, port = address.rpartition(":")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"IPv6 addresses need brackets, e.g. [::1]:3031, got {raw!r}")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"expected a port number 0-65535 after ':', got {raw!r}")
    return address


def _parse_tcp_address(raw: str) -> str:
    """An address Prometheus can scrape: host:port, :port or [v6]:port, never a unix socket."""
    address = raw.strip() and _parse_address(raw)
    if not address or address.startswith("@") or ":" not in address or "/" in address:
        raise ValueError(
            f"expected [host]:port such as 10.0.0.5:9192 or :9192 (Prometheus scrapes "
            f"over TCP), got {raw!r}"
        )
    return address


def _resolve_address(address: str, base: str) -> str:
    if address.startswith("@") or ":" in address:
        return address
    return _absolute(address, base)


def _parse_key_value(raw: str) -> tuple[str, str]:
    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected KEY=VALUE, got {raw!r}")
    return key.strip(), value


def _parse_prefix_pair(what: str) -> Callable[[str], tuple[str, str]]:
    def parse(raw: str) -> tuple[str, str]:
        prefix, sep, target = raw.partition("=")
        prefix, target = prefix.strip(), target.strip()
        if not sep or not target or not prefix.startswith("/"):
            raise ValueError(f"expected /PREFIX={what}, got {raw!r}")
        return prefix, target

    return parse


def _resolve_second(pair: tuple[str, str], base: str) -> tuple[str, str]:
    return pair[0], _absolute(pair[1], base)


def is_app_file(target: str) -> bool:
    """Whether a mount target names a file (loaded like wsgi-file) rather than a module."""
    return target.endswith((".py", ".wsgi")) or "/" in target


def _resolve_mount(pair: tuple[str, str], base: str) -> tuple[str, str]:
    return _resolve_second(pair, base) if is_app_file(pair[1]) else pair


def _parse_module(raw: str) -> str:
    module, _, attribute = raw.strip().partition(":")
    dotted_ok = all(part.isidentifier() for part in module.split("."))
    if not dotted_ok or (attribute and not attribute.isidentifier()):
        hint = " (a file path belongs in wsgi-file)" if raw.endswith(".py") or "/" in raw else ""
        raise ValueError(
            f"expected a module such as mysite.wsgi or mysite.wsgi:app, got {raw!r}{hint}"
        )
    return raw.strip()


def _parse_identifier(raw: str) -> str:
    if not raw.strip().isidentifier():
        raise ValueError(f"expected a Python name, got {raw!r}")
    return raw.strip()


def _parse_regexp(raw: str) -> str:
    if raw == "":
        raise ValueError("expected a regular expression")
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {raw!r}: {exc}") from None
    return raw


def _parse_log_format(raw: str) -> str:
    if raw == "":
        raise ValueError("expected a %(var) template or json")
    request_formatter(raw)  # ValueError names an unknown %(var)
    return raw


def _parse_user(raw: str) -> str:
    name = _parse_string(raw.strip())
    if not name.isdigit():
        try:
            pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"no such user {name!r}") from None
    return name


def _parse_group(raw: str) -> str:
    name = _parse_string(raw.strip())
    if not name.isdigit():
        try:
            grp.getgrnam(name)
        except KeyError:
            raise ValueError(f"no such group {name!r}") from None
    return name


STRING = ValueType("string", "VALUE", _parse_string)
PATH = ValueType("path", "PATH", _parse_string, resolve=_absolute)
ADDRESS = ValueType("address", "ADDRESS", _parse_address, resolve=_resolve_address)
TCP_ADDRESS = ValueType("TCP address", "[HOST]:PORT", _parse_tcp_address)
NATURAL = ValueType("integer", "N", _parse_natural)
POSITIVE = ValueType("positive integer", "N", _parse_positive)
BOOL = ValueType("boolean", "BOOL", _parse_bool, bare="true")
MODE = ValueType("octal mode", "MODE", _parse_mode, bare="666")  # bare chmod-socket = 666
KEEPALIVE = ValueType("seconds", "SECONDS", _parse_keepalive, bare="true")
KEY_VALUE = ValueType("KEY=VALUE", "KEY=VALUE", _parse_key_value)
STATIC_MAP = ValueType(
    "/PREFIX=DIR", "/PREFIX=DIR", _parse_prefix_pair("DIR"), resolve=_resolve_second
)
MOUNT = ValueType("/PREFIX=APP", "/PREFIX=APP", _parse_prefix_pair("APP"), resolve=_resolve_mount)
MODULE = ValueType("module", "MODULE[:CALLABLE]", _parse_module)
IDENTIFIER = ValueType("name", "NAME", _parse_identifier)
USER = ValueType("user", "USER", _parse_user)
REGEXP = ValueType("regexp", "REGEXP", _parse_regexp)
LOG_ENCODER = ValueType("log encoder", "ENCODER[ ARGS]", parse_encoder)
LOG_FORMAT = ValueType("log format", "FORMAT", _parse_log_format)
GROUP = ValueType("group", "GROUP", _parse_group)


# --------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # uWSGI's spelling: the ini key and the long flag
    field: str  # the AppServerConfig attribute it sets
    type: ValueType
    default: Any  # must equal the AppServerConfig default (a test checks)
    help: str
    multi: bool = False  # may repeat; values accumulate in order
    aliases: tuple[str, ...] = ()
    short: str | None = None  # uWSGI's one-letter flag, without the dash
    # Base directory for relative paths in the value: the launch directory, or
    # chdir (falling back to the launch directory).  None: not a path.
    relative_to: Literal["cwd", "chdir"] | None = None


OPTIONS: tuple[Option, ...] = (
    # Listeners.
    Option(
        "socket",
        "sockets",
        ADDRESS,
        (),
        "bind a uwsgi-protocol socket (host:port or path)",
        multi=True,
        aliases=("uwsgi-socket",),
        short="s",
        relative_to="cwd",
    ),
    Option(
        "http-socket",
        "http_sockets",
        ADDRESS,
        (),
        "bind an HTTP socket served by the workers",
        multi=True,
        aliases=("http11-socket",),
        relative_to="cwd",
    ),
    Option(
        "http",
        "http",
        ADDRESS,
        (),
        "start an HTTP front that proxies to the workers",
        multi=True,
        relative_to="cwd",
    ),
    Option(
        "chmod-socket", "chmod_socket", MODE, None, "mode of unix sockets (bare: 666)", short="C"
    ),
    Option("listen", "listen", POSITIVE, 1024, "listen queue (backlog) size", short="l"),
    # The application.
    Option(
        "chdir",
        "chdir",
        PATH,
        None,
        "change to this directory before loading the app",
        relative_to="cwd",
    ),
    Option(
        "module",
        "module",
        MODULE,
        None,
        "load the WSGI app from this module",
        aliases=("wsgi",),
        short="w",
    ),
    Option(
        "wsgi-file",
        "wsgi_file",
        PATH,
        None,
        "load the WSGI app from this file",
        aliases=("file",),
        relative_to="chdir",
    ),
    Option("callable", "callable", IDENTIFIER, "application", "name of the WSGI callable"),
    Option(
        "mount",
        "mounts",
        MOUNT,
        (),
        "mount an app (module or file) under a URL prefix",
        multi=True,
        relative_to="chdir",
    ),
    Option(
        "manage-script-name",
        "manage_script_name",
        BOOL,
        False,
        "accepted for uWSGI compatibility: a mount's prefix always moves from PATH_INFO "
        "to SCRIPT_NAME",
    ),
    Option("env", "env", KEY_VALUE, (), "set an environment variable for the app", multi=True),
    Option(
        "virtualenv",
        "virtualenv",
        PATH,
        None,
        "use this virtualenv",
        aliases=("venv", "home", "pyhome"),
        short="H",
        relative_to="cwd",
    ),
    Option(
        "pythonpath",
        "pythonpath",
        PATH,
        (),
        "add a directory to sys.path",
        multi=True,
        aliases=("python-path", "pp"),
        relative_to="chdir",
    ),
    # Processes.
    Option(
        "master",
        "master",
        BOOL,
        False,
        "accepted for uWSGI compatibility: appserver always runs a master process",
        short="M",
    ),
    Option(
        "processes",
        "processes",
        POSITIVE,
        1,
        "number of worker processes",
        aliases=("workers",),
        short="p",
    ),
    Option("threads", "threads", POSITIVE, 1, "threads per worker"),
    Option(
        "enable-threads",
        "enable_threads",
        BOOL,
        True,
        "allow the app to start threads (always on here)",
        short="T",
    ),
    Option(
        "lazy-apps",
        "lazy_apps",
        BOOL,
        False,
        "load the app in each worker after fork",
        aliases=("lazy",),
    ),
    Option(
        "harakiri",
        "harakiri",
        NATURAL,
        0,
        "kill a worker stuck on one request this long (s)",
        short="t",
    ),
    Option(
        "max-requests",
        "max_requests",
        NATURAL,
        0,
        "recycle a worker after this many requests",
        short="R",
    ),
    Option(
        "max-requests-delta",
        "max_requests_delta",
        NATURAL,
        None,
        "jitter added to max-requests per worker",
    ),
    Option("reload-on-rss", "reload_on_rss", NATURAL, 0, "recycle a worker above this RSS (MB)"),
    Option(
        "worker-reload-mercy",
        "worker_reload_mercy",
        NATURAL,
        60,
        "seconds a stopping worker gets before SIGKILL",
    ),
    Option("die-on-term", "die_on_term", BOOL, False, "accepted: SIGTERM always stops appserver"),
    Option(
        "touch-reload",
        "touch_reload",
        PATH,
        (),
        "reload gracefully when this file is touched",
        multi=True,
        relative_to="chdir",
    ),
    Option(
        "uid",
        "uid",
        USER,
        None,
        "run as this user (name or number): the master drops root after binding and "
        "writing the pidfile, before it loads the app; unix sockets are handed to it",
    ),
    Option(
        "gid",
        "gid",
        GROUP,
        None,
        "run as this group (name or number); default with uid: the user's primary group",
    ),
    # Requests.
    Option(
        "buffer-size",
        "buffer_size",
        POSITIVE,
        4096,
        "largest request header block (uwsgi vars or HTTP headers) in bytes",
        short="b",
    ),
    Option(
        "post-buffering",
        "post_buffering",
        NATURAL,
        0,
        "spool request bodies larger than this to disk (bytes)",
    ),
    Option(
        "socket-timeout",
        "socket_timeout",
        POSITIVE,
        4,
        "seconds for one read or write on a client socket",
        short="z",
    ),
    Option(
        "http-keepalive",
        "http_keepalive",
        KEEPALIVE,
        5,
        "seconds an idle keep-alive connection on http-socket is kept (0 = close); "
        "the http front keeps edge's 75 s",
    ),
    Option(
        "request-header-timeout",
        "request_header_timeout",
        NATURAL,
        10,
        "seconds a client has to send a whole request head (408 after; 0 = off)",
    ),
    Option(
        "request-body-timeout",
        "request_body_timeout",
        NATURAL,
        30,
        "seconds a client has to send a request body, + 1 s per KiB received (0 = off)",
    ),
    Option(
        "static-map",
        "static_maps",
        STATIC_MAP,
        (),
        "serve files under /PREFIX from DIR",
        multi=True,
        relative_to="chdir",
    ),
    # Control and observation.
    Option(
        "pidfile",
        "pidfile",
        PATH,
        None,
        "write the master's pid here",
        aliases=("pidfile2", "safe-pidfile", "safe-pidfile2"),
        relative_to="cwd",
    ),
    Option(
        "daemonize",
        "daemonize",
        PATH,
        None,
        "detach and log to this file",
        aliases=("daemonize2",),
        short="d",
        relative_to="cwd",
    ),
    Option(
        "logto",
        "logto",
        PATH,
        None,
        "log to this file without detaching",
        aliases=("logto2",),
        relative_to="cwd",
    ),
    Option(
        "log-format",
        "log_format",
        LOG_FORMAT,
        None,
        "request log line: a %(var) template or json",
        aliases=("logformat",),
    ),
    Option("disable-logging", "disable_logging", BOOL, False, "do not log requests", short="L"),
    Option(
        "log-traceback",
        "log_traceback",
        BOOL,
        True,
        "after an app exception's summary line, log its traceback (appserver's own option)",
    ),
    Option(
        "log-drain",
        "log_drains",
        REGEXP,
        (),
        "drop log lines (request and server) matching this Python regexp",
        multi=True,
    ),
    Option(
        "log-encoder",
        "log_encoders",
        LOG_ENCODER,
        (),
        "encode every log line: json, json TEMPLATE, format TEMPLATE, prefix X, suffix X, nl",
        multi=True,
    ),
    Option(
        "log-req-encoder",
        "log_req_encoders",
        LOG_ENCODER,
        (),
        "encode request lines with this chain instead of log-encoder's",
        multi=True,
    ),
    Option(
        "stats",
        "stats",
        ADDRESS,
        None,
        "serve JSON stats on this address",
        aliases=("stats-server",),
        relative_to="cwd",
    ),
    Option(
        "metrics-http",
        "metrics_http",
        TCP_ADDRESS,
        None,
        "serve /metrics (Prometheus), /status and /status.json over HTTP on this address "
        "(bind it to an internal network only)",
    ),
    Option("vacuum", "vacuum", BOOL, False, "remove unix sockets and the pidfile on exit"),
)


class Ignored(NamedTuple):
    reason: str
    takes_value: bool = False  # True: a value is required (``--plugin python3``)


IGNORED: dict[str, Ignored] = {
    "plugin": Ignored("Python support is built in", True),
    "plugins": Ignored("Python support is built in", True),
    "thunder-lock": Ignored("workers accept() without a lock"),
    "single-interpreter": Ignored("each worker runs one interpreter"),
    "auto-procname": Ignored("process titles are not changed"),
    "procname": Ignored("process titles are not changed", True),
    "procname-prefix": Ignored("process titles are not changed", True),
    "procname-prefix-spaced": Ignored("process titles are not changed", True),
    "procname-append": Ignored("process titles are not changed", True),
    "procname-master": Ignored("process titles are not changed", True),
    "memory-report": Ignored("the stats server reports memory"),
    "no-orphans": Ignored("workers always exit when the master dies"),
    "log-date": Ignored("log timestamps are fixed by the log format"),
    "logdate": Ignored("log timestamps are fixed by the log format"),
    "log-master": Ignored("there is no separate logger process"),
    "max-fd": Ignored("the open-files limit is left to the OS (ulimit -n)", True),
    "optimize": Ignored("set PYTHONOPTIMIZE in the environment instead", True),
    "strict": Ignored("appserver is always strict: unknown options are errors"),
    "need-app": Ignored("appserver never starts without a loadable application"),
    "py-autoreload": Ignored("source files are not watched; use touch-reload", True),
    "python-autoreload": Ignored("source files are not watched; use touch-reload", True),
    "hook-master-start": Ignored(
        "hooks are not run; SIGTERM already stops appserver gracefully", True
    ),
    "cheaper": Ignored("all processes run all the time", True),
    "cheaper-initial": Ignored("all processes run all the time", True),
    "cheaper-step": Ignored("all processes run all the time", True),
    "cheaper-algo": Ignored("all processes run all the time", True),
    "cheaper-overload": Ignored("all processes run all the time", True),
    "min-worker-lifetime": Ignored("the respawn back-off is not configurable", True),
    "ignore-sigpipe": Ignored("a vanished client is always one log line, never a traceback"),
    "ignore-write-errors": Ignored("a vanished client is always one log line, never a traceback"),
    "disable-write-exception": Ignored(
        "a vanished client is always one log line, never a traceback"
    ),
    "harakiri-verbose": Ignored("harakiri always logs the URI and the elapsed time"),
    "wsgi-disable-file-wrapper": Ignored("wsgi.file_wrapper is always available"),
    "pep3333-input": Ignored("wsgi.input always follows PEP 3333"),
    "post-buffering-bufsize": Ignored("request bodies are spooled in fixed-size chunks", True),
    "thread-stacksize": Ignored("threads use Python's default stack size", True),
    "threads-stacksize": Ignored("threads use Python's default stack size", True),
    "cpu-affinity": Ignored("CPU placement is left to the OS", True),
    "reload-mercy": Ignored("worker-reload-mercy bounds every worker stop", True),
    "http-timeout": Ignored("the HTTP front (edge) keeps nginx's 60 s timeouts", True),
    "stats-http": Ignored("the stats server always answers with plain JSON"),
    "catch-exceptions": Ignored("tracebacks go to the log, never to the client"),
}

# A trailing "*" makes the key a prefix: "route*" covers route-uri, route-host...
UNSUPPORTED: dict[str, str] = {
    "emperor*": "run one appserver per app under systemd, compose or Kubernetes",
    "vassal*": "run one appserver per app under systemd, compose or Kubernetes",
    "spooler*": "use a task queue such as Celery or RQ",
    "mule*": "use a task queue such as Celery or RQ",
    "cron*": "use the system's cron or your platform's scheduler",
    "unique-cron": "use the system's cron or your platform's scheduler",
    "route*": "put routing rules in edge",
    "response-route*": "put routing rules in edge",
    "final-route*": "put routing rules in edge",
    "error-route*": "put routing rules in edge",
    "cache*": "use Django's cache framework with an external cache",
    "fastrouter*": "edge is the router",
    "rawrouter*": "edge is the router",
    "sslrouter*": "edge is the router",
    "forkptyrouter*": "edge is the router",
    "subscribe*": "edge re-resolves replicas by DNS",
    "subscription*": "edge re-resolves replicas by DNS",
    "legion*": "edge re-resolves replicas by DNS",
    "offload-threads": "static files are sent by the worker with sendfile",
    "gevent*": "concurrency is processes x threads",
    "async": "concurrency is processes x threads",
    "ugreen": "concurrency is processes x threads",
    "greenlet": "concurrency is processes x threads",
    "asyncio": "concurrency is processes x threads",
    "tornado": "concurrency is processes x threads",
    "https*": "terminate TLS in edge",
    "ssl-*": "terminate TLS in edge",
    "suwsgi-socket": "terminate TLS in edge",
    "fastcgi*": "appserver speaks uwsgi and HTTP only",
    "scgi*": "appserver speaks uwsgi and HTTP only",
    "protocol": "appserver speaks uwsgi and HTTP only",
    "socket-protocol": "appserver speaks uwsgi and HTTP only",
    "shared-socket": "bind with socket, http-socket or http",
    "attach-daemon*": "run other programs under your process supervisor",
    "smart-attach-daemon*": "run other programs under your process supervisor",
    "master-fifo": "use appserver --reload/--stop PIDFILE or signals",
    "touch-chain-reload": "touch-reload already reloads workers gracefully",
    "zerg*": "scale with more replicas behind edge",
    "carbon*": "read the stats server",
    "stats-push": "read the stats server",
    "alarm*": "alert from your log or metrics pipeline",
    "check-static*": "use static-map, or serve files from edge",
    "static-*": "only static-map is implemented; serve other static setups from edge",
    "limit-post": "limit request bodies in edge (client_max_body_size)",
    "limit-as": "use reload-on-rss",
    "reload-on-as": "use reload-on-rss",
    "evil-reload-on-rss": "use reload-on-rss",
    "evil-reload-on-as": "use reload-on-rss",
    "max-worker-lifetime": "use max-requests",
    "logger*": "log to a file with logto or daemonize, or to stderr",
    "req-logger": "log to a file with logto or daemonize, or to stderr",
    "log-route": "there is one log stream; drop lines with log-drain",
    "log-req-route": "there is one log stream; drop lines with log-drain",
    "log-filter": "drop the lines you do not want with log-drain",
    "log-maxsize": "rotate logs with logrotate",
    "log-backupname": "rotate logs with logrotate",
    "chown-socket": "create the socket in a directory with the right owner, or use chmod-socket",
    "umask": "set the umask in the service manager",
    "vhost*": "mount apps with mount and manage-script-name",
    "hook-*": "run it from your container entrypoint or service manager",
    "exec-*": "run it from your container entrypoint or service manager",
    "for": "config logic blocks are not supported",
    "for-glob": "config logic blocks are not supported",
    "for-readline": "config logic blocks are not supported",
    "for-times": "config logic blocks are not supported",
    "endfor": "config logic blocks are not supported",
    "end-for": "config logic blocks are not supported",
    "if-*": "config logic blocks are not supported",
    "endif": "config logic blocks are not supported",
    "end-if": "config logic blocks are not supported",
    "else": "config logic blocks are not supported",
    "inherit": "use ini = other.ini",
    "xml": "only ini files are read",
    "yaml": "only ini files are read",
    "yml": "only ini files are read",
    "json": "only ini files are read",
    "psgi": "appserver serves Python WSGI apps only",
    "rack": "appserver serves Python WSGI apps only",
    "php*": "appserver serves Python WSGI apps only",
    "lua*": "appserver serves Python WSGI apps only",
    "cgi*": "appserver serves Python WSGI apps only",
}

# Built once: name and alias -> Option.
_BY_NAME: dict[str, Option] = {}
for _option in OPTIONS:
    for _spelling in (_option.name, *_option.aliases):
        _BY_NAME[_spelling] = _option
del _option, _spelling


def normalise_key(key: str) -> str:
    """uWSGI keys are case-sensitive; ``_`` and ``-`` are interchangeable."""
    return key.strip().replace("_", "-")


def find_option(name: str) -> Option | None:
    return _BY_NAME.get(normalise_key(name))


def unsupported_reason(name: str) -> str | None:
    name = normalise_key(name)
    if name in _BY_NAME or name in IGNORED:
        return None  # prefixes such as "static-*" must not swallow what we do implement
    if name in UNSUPPORTED:
        return UNSUPPORTED[name]
    for pattern, reason in UNSUPPORTED.items():
        if pattern.endswith("*") and name.startswith(pattern[:-1]):
            return reason
    return None


def is_known(name: str) -> bool:
    """True for every key build_config will not call unknown (table, ignored, unsupported)."""
    name = normalise_key(name)
    return name in _BY_NAME or name in IGNORED or unsupported_reason(name) is not None


def unknown_option_message(name: str) -> str:
    message = f"unknown option {name!r}"
    close = difflib.get_close_matches(normalise_key(name), list(_BY_NAME), n=1)
    return f"{message} (did you mean {close[0]!r}?)" if close else message


def _where(source: str, key: str) -> str:
    # A flag already names the option; a file needs the key after it.
    return source if source.startswith("-") else f"{source}: {key}"


# --------------------------------------------------------------------------
# build_config
# --------------------------------------------------------------------------


def build_config(
    entries: Iterable[Entry | tuple[str, str | None, str]],
    *,
    cwd: str,
    argv: Sequence[str] = (),
    config_file: str | None = None,
    warnings: list[str] | None = None,
) -> AppServerConfig:
    """Parse, resolve and validate ``entries`` in order into an ``AppServerConfig``.

    Raises ``ConfigError`` with a one-line message on the first problem.  Soft
    problems are appended, one line each, to ``warnings`` for the caller to print.
    """
    notes: list[str] = warnings if warnings is not None else []
    singles: dict[str, Any] = {}
    multis: dict[str, list[Any]] = {}
    origin: dict[str, str] = {}  # field -> "source: key" of its last setting, for messages
    first_file: str | None = None

    for key, raw, source in entries:
        name = normalise_key(key)
        if first_file is None and not source.startswith("-"):
            first_file = source
        option = _BY_NAME.get(name)
        if option is None:
            if name in IGNORED:
                notes.append(f"{_where(source, name)}: ignored ({IGNORED[name].reason})")
                continue
            reason = unsupported_reason(name)
            if reason is not None:
                raise ConfigError(f"{_where(source, name)}: not supported by appserver ({reason})")
            raise ConfigError(f"{source}: {unknown_option_message(name)}")

        if raw is None or (raw == "" and option.type.bare is not None):
            if option.type.bare is None:
                raise ConfigError(f"{_where(source, name)}: expected a value")
            raw = option.type.bare
        try:
            value = option.type.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{_where(source, name)}: {_with_hint(str(exc), raw)}") from None
        origin[option.field] = _where(source, name)
        if option.multi:
            multis.setdefault(option.field, []).append(value)
        else:
            singles[option.field] = value

    values: dict[str, Any] = {option.field: option.default for option in OPTIONS}
    values.update(singles)
    values.update({field: tuple(items) for field, items in multis.items()})
    _resolve_paths(values, cwd)
    _validate(values, origin, notes, where=first_file)
    return AppServerConfig(**values, config_file=config_file, argv=tuple(argv))


def _with_hint(message: str, raw: str) -> str:
    # uWSGI's ini format has no inline comments; "processes = 4  # cores" is a common slip.
    if " #" in raw or " ;" in raw:
        return f"{message} (ini files have no inline comments: put them on their own line)"
    return message


def _resolve_paths(values: dict[str, Any], cwd: str) -> None:
    cwd = os.path.abspath(cwd)
    if values["chdir"] is not None:
        values["chdir"] = _absolute(values["chdir"], cwd)
    app_dir = values["chdir"] or cwd
    for option in OPTIONS:
        resolve = option.type.resolve
        value = values[option.field]
        if resolve is None or option.relative_to is None or value is None:
            continue
        if option.field == "chdir":
            continue  # already resolved: everything else may depend on it
        base = cwd if option.relative_to == "cwd" else app_dir
        if option.multi:
            values[option.field] = tuple(resolve(item, base) for item in value)
        else:
            values[option.field] = resolve(value, base)


def read_somaxconn() -> int | None:
    """The kernel's backlog cap, or None where it cannot be read (not Linux, no /proc)."""
    try:
        with open(SOMAXCONN_PATH, encoding="ascii") as file:
            return int(file.read().strip())
    except (OSError, ValueError):
        return None


def _validate(
    values: dict[str, Any], origin: dict[str, str], notes: list[str], *, where: str | None
) -> None:
    prefix = f"{where}: " if where else ""

    def fail(field: str, message: str) -> ConfigError:
        # Only fields that were set get here, so origin names the file or flag and key.
        return ConfigError(f"{origin[field]}: {message}")

    for field in ("chdir", "virtualenv"):
        path = values[field]
        if path is not None and not os.path.isdir(path):
            raise fail(field, f"directory {path!r} does not exist")

    if not (values["sockets"] or values["http_sockets"] or values["http"]):
        raise ConfigError(
            f"{prefix}no listener: set socket (for nginx/edge, e.g. socket = 127.0.0.1:3031), "
            "http-socket or http"
        )

    kinds = [f for f in ("module", "wsgi_file", "mounts") if values[f]]
    if not kinds:
        raise ConfigError(
            f"{prefix}no application: set module (e.g. module = mysite.wsgi:application), "
            "wsgi-file or mount"
        )
    if len(kinds) > 1:
        named = " and ".join(origin[f] for f in kinds)
        raise ConfigError(f"{named}: set exactly one of module, wsgi-file or mount")

    relative_note = (
        f" (relative paths are resolved against chdir {values['chdir']!r})"
        if values["chdir"]
        else ""
    )
    wsgi_file = values["wsgi_file"]
    if wsgi_file is not None and not os.path.isfile(wsgi_file):
        raise fail("wsgi_file", f"file {wsgi_file!r} does not exist{relative_note}")
    for prefix_path, target in values["mounts"]:
        if is_app_file(target) and not os.path.isfile(target):
            raise fail("mounts", f"{prefix_path}: file {target!r} does not exist{relative_note}")

    for field in ("pidfile", "daemonize", "logto"):
        path = values[field]
        if path is not None and not os.path.isdir(os.path.dirname(path)):
            raise fail(field, f"directory of {path!r} does not exist")

    for url_prefix, directory in values["static_maps"]:
        if not os.path.isdir(directory):
            notes.append(
                f"{origin['static_maps']}: {url_prefix}: directory {directory!r} "
                "does not exist (yet); requests fall through to the app"
            )
    for directory in values["pythonpath"]:
        if not os.path.isdir(directory):
            notes.append(f"{origin['pythonpath']}: directory {directory!r} does not exist")

    metrics = values["metrics_http"]
    if metrics is not None and not metrics.endswith(":0"):  # port 0: any free port, never equal
        for field, key in (
            ("sockets", "socket"),
            ("http_sockets", "http-socket"),
            ("http", "http"),
        ):
            if metrics in values[field]:
                raise fail("metrics_http", f"{metrics} is also a {key} address: use another port")
        if metrics == values["stats"]:
            raise fail("metrics_http", f"{metrics} is also the stats address: use another port")

    somaxconn = read_somaxconn()
    if somaxconn is not None and values["listen"] > somaxconn:
        listen = values["listen"]
        notes.append(
            f"{origin.get('listen', 'listen')}: backlog {listen} exceeds net.core.somaxconn "
            f"({somaxconn}); the kernel caps it at {somaxconn}. Raise it with "
            f"`sysctl -w net.core.somaxconn={listen}` "
            f"(docker: --sysctl net.core.somaxconn={listen})"
        )


def config_fields() -> frozenset[str]:
    """AppServerConfig attributes the table must cover (all but the provenance ones)."""
    return frozenset(f.name for f in fields(AppServerConfig)) - {"config_file", "argv"}
