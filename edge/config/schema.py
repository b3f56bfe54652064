"""The typed, immutable configuration of one edge instance.

Every config class here is a frozen, slotted dataclass built only by
``edge.config.load`` (from YAML or from the quick-mode flags), which is the one
place that validates.  Nothing below checks anything: a value that reached a
dataclass is already known to be good, so the I/O code can read fields without
defensive checks.  Immutability is what makes SIGHUP simple: build a whole new
``EdgeConfig``, swap one reference, and keep the old one if the build fails.

Units are fixed so nobody has to guess: sizes are ``int`` bytes, durations are
``float`` seconds.  Defaults are nginx's (``ngx_http_core_module``,
``ngx_http_upstream_module``, ``ngx_http_uwsgi_module``) unless a comment says
why we differ.

A field's type is also what the YAML may hold: the loader structures the YAML
by these annotations, so a new directive is a new typed field.  ``Annotated``
markers (``Range``, ``Unit``, ``Text`` ... below) narrow a type to the values
nginx accepts and say how they are written (``1m``, ``60s``, ``off``); they
describe, the loader enforces.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Annotated, Literal, TypeAlias

KIB = 1024
MIB = 1024 * 1024

# Idle pooled connections to HTTP upstreams are dropped after this long: below
# gunicorn's 2 s keep-alive, so we never send on a connection the backend is
# about to close (the keep-alive race behind load balancers, DESIGN.md #9).
UPSTREAM_KEEPALIVE_TIMEOUT = 1.5

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


# --- value domains: what a field accepts, read by the loader -------------------------------


@dataclass(frozen=True, slots=True)
class Range:
    """An integer from ``low`` to ``high`` (None: no upper bound)."""

    low: int
    high: int | None = None


@dataclass(frozen=True, slots=True)
class Unit:
    """A number written with nginx's units: ``size`` (``1m``, ``8k``: bytes), ``duration``
    (``60s``, ``500ms``, ``1h 30m``: seconds) or ``rate`` (``10r/s``: milli-requests per
    second).  ``off`` is the value that ``off``/``false`` stands for, when they are allowed."""

    kind: Literal["size", "duration", "rate"]
    off: float | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """A non-empty string, optionally matching ``pattern`` (whole); ``expected`` names it
    in errors ("expected an upstream name"), ``message`` replaces the error outright."""

    expected: str
    pattern: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class Template:
    """A string whose ``$variables`` must be ones the proxy implements
    (``edge.variables.KNOWN`` and its prefixes); with ``numbers``, a YAML number is taken as its text."""

    numbers: bool = False


@dataclass(frozen=True, slots=True)
class File:
    """A file, resolved against the YAML file's directory; with path checks on, it must be
    a readable regular file (``ssl_certificate``: ``edge -t`` names the file it cannot use)."""


@dataclass(frozen=True, slots=True)
class Directory:
    """A directory, resolved against the YAML file's own; ``keep_slash`` keeps a trailing
    ``/`` as written (``alias`` maps a prefix to it textually)."""

    keep_slash: bool = False


@dataclass(frozen=True, slots=True)
class LogTarget:
    """``stdout``, ``stderr`` or a file path (resolved like a directory); with ``off``,
    ``off``/``false`` turn the log off (None)."""

    off: bool = False


@dataclass(frozen=True, slots=True)
class NonEmpty:
    """A list that must have an entry; ``message`` says why."""

    message: str


@dataclass(frozen=True, slots=True)
class Keyed:
    """A tuple of named items written as a YAML mapping ``{name: item}``; the key becomes
    the item's ``name`` field.  ``expected`` names the mapping in errors."""

    expected: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A boolean that may only be false: ``true`` asks for something not implemented."""

    message: str


@dataclass(frozen=True, slots=True)
class Refers:
    """A name that must be defined in the top-level ``section`` (``upstreams``, a zone)."""

    section: Literal["upstreams", "limit_req_zones", "limit_conn_zones"]


@dataclass(frozen=True, slots=True)
class Syntax:
    """A value with a grammar of its own (``try_files``, ``"4 8k"`` ...), parsed by the
    loader's converter of this name."""

    name: str


Bytes: TypeAlias = Annotated[int, Unit("size")]
Seconds: TypeAlias = Annotated[float, Unit("duration")]
Count: TypeAlias = Annotated[int, Range(0)]  # 0 usually means "unlimited" or "none"
Positive: TypeAlias = Annotated[int, Range(1)]
Status: TypeAlias = Annotated[int, Range(100, 599)]  # 444 is nginx's "close, no response"
ErrorStatus: TypeAlias = Annotated[int, Range(400, 599)]

Balance: TypeAlias = Literal["round_robin", "least_conn", "ip_hash"]
Protocol: TypeAlias = Literal["uwsgi", "http"]
LogLevel: TypeAlias = Literal["debug", "info", "notice", "warn", "error", "crit", "alert", "emerg"]
# ``combined``, ``json`` or the name of one of the config's ``log_formats``.
LogFormat: TypeAlias = Annotated[str, Text("a log format name")]
LogEscape: TypeAlias = Literal["default", "json", "none"]
# Older protocols are refused: OpenSSL 3 disables them at its default security level,
# and nginx dropped them from its default in 1.23.4.
TlsProtocol: TypeAlias = Literal["TLSv1.2", "TLSv1.3"]

# ECDHE key exchange (forward secrecy) with AEAD ciphers only, ECDSA first: Mozilla's
# "intermediate" list without the finite-field DHE suites (they need ssl_dhparam, and
# every client that speaks TLS 1.2 has ECDHE).  No CBC (Lucky13, padding oracles), no
# RSA key exchange (no forward secrecy, ROBOT), no SHA-1 MACs.  It applies to TLS 1.2;
# TLS 1.3 always uses OpenSSL's TLS 1.3 suites (AES-GCM and ChaCha20-Poly1305), which are
# all modern.
MODERN_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

# How a location's ``path`` is matched, in nginx's terms:
#   exact           "= /path"        compared whole; wins immediately
#   prefix          "/path"          longest prefix; regexes may still override it
#   prefix_no_regex "^~ /path"       longest prefix that stops the regex search
#   regex           "~ re"           first matching regex in config order
#   regex_icase     "~* re"          same, case-insensitive
#   named           "@name"          only reachable from try_files
MatchKind: TypeAlias = Literal[
    "exact", "prefix", "prefix_no_regex", "regex", "regex_icase", "named"
]

# nginx's proxy/uwsgi_next_upstream conditions; `off` (no retries) is stored as ().
NextUpstreamCondition: TypeAlias = Literal[
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
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an upstream server lives: ``host:port`` (a name or literal IP) or a unix socket."""

    host: str = ""
    port: int = 0
    path: str = ""  # unix socket path; host/port unused when set

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Listen:
    """One listening address of a server block (nginx ``listen``), with its options.

    A listen is its address: two are equal when their host and port are, whatever
    their options (``ssl``, ``http2``), because an address is bound once and shared
    by every server block on it; the loader refuses blocks whose options disagree.
    """

    host: str = "0.0.0.0"  # "0.0.0.0" / "::" are wildcards that catch every local address
    port: int = 80
    ssl: bool = field(default=False, compare=False)  # TLS on this address (``listen 443 ssl``)
    # HTTP/2, chosen by ALPN ``h2`` during the TLS handshake; needs ssl (no h2c).
    http2: bool = field(default=False, compare=False)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl else "http"

    @property
    def is_wildcard(self) -> bool:
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


# --- location handlers ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expires:
    """nginx ``expires``: ``after`` N seconds (negative: ``no-cache``), ``epoch`` or ``max``."""

    kind: Literal["after", "epoch", "max"]
    seconds: int = 0


@dataclass(frozen=True, slots=True)
class OpenFileCache:
    """nginx ``open_file_cache`` (off unless configured); ``errors`` caches ENOENT too."""

    max: Positive = 1000
    inactive: Seconds = 60.0
    valid: Seconds = 60.0
    min_uses: Positive = 1
    errors: bool = False


@dataclass(frozen=True, slots=True)
class StaticHandler:
    """Serve files.  ``root`` appends the whole URI; ``alias`` replaces the location prefix.

    Paths are absolute (relative ones were resolved against the YAML file's
    directory).  ``try_files`` keeps nginx's spelling (``$uri``, ``$uri/``,
    ``/index.html``, ``=404``, ``@name``); its last entry is the fallback.
    """

    root: Annotated[str | None, Directory()] = None
    alias: Annotated[str | None, Directory(keep_slash=True)] = None
    index: Annotated[tuple[str, ...], Syntax("index")] = ("index.html",)
    try_files: Annotated[tuple[str, ...], Syntax("try_files")] = ()
    # Directory listings are not built; accepting "on" and answering 403 would lie.
    autoindex: Annotated[
        bool, Refused("directory listings are not implemented: use index or try_files")
    ] = False
    gzip_static: bool = False
    expires: Expires | None = None
    open_file_cache: OpenFileCache | None = None
    # nginx follows every symlink by default; we refuse ones that leave the
    # root/alias unless asked, because "no file outside root" is the promise.
    allow_symlinks_outside: bool = False

    @property
    def base_dir(self) -> str:
        return self.alias if self.alias is not None else (self.root or "")


@dataclass(frozen=True, slots=True)
class ProxyParam:
    """One ``uwsgi_param``-style variable; ``value`` may contain ``$variables``."""

    name: Annotated[
        str,
        Text(
            "a param name", r"[A-Za-z0-9_.\-]+", "a param name is letters, digits, '_', '-' or '.'"
        ),
    ]
    value: Annotated[str, Template(numbers=True)] = ""
    if_not_empty: bool = False


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """Per-location microcache: GET/HEAD only, keyed on method+host+URI, bounded in memory."""

    valid: Annotated[tuple[tuple[int, float], ...], Syntax("cache_valid")] = (
        (200, 1.0),
        (301, 1.0),
        (404, 1.0),
    )
    max_size: Bytes = 10 * MIB  # total bytes held by this location's cache
    max_entry_size: Bytes = 1 * MIB  # larger responses are streamed, never stored


@dataclass(frozen=True, slots=True)
class ProxyHandler:
    """Pass the request to a named upstream over uwsgi or HTTP/1.1."""

    upstream: Annotated[str, Text("an upstream name"), Refers("upstreams")]
    protocol: Protocol = "uwsgi"
    params: Annotated[tuple[ProxyParam, ...], Keyed("NAME: value")] = ()
    connect_timeout: Seconds = 60.0
    send_timeout: Seconds = 60.0
    read_timeout: Seconds = 60.0
    ignore_client_abort: bool = False
    # Written as a list or "error timeout", or "off" (stored as an empty tuple).
    next_upstream: Annotated[tuple[NextUpstreamCondition, ...], Syntax("next_upstream")] = (
        "error",
        "timeout",
    )
    next_upstream_tries: Count = 0  # 0 = as many as there are peers
    next_upstream_timeout: Seconds = 0.0  # 0 = unlimited
    # nginx defaults to $proxy_host, which breaks Django's ALLOWED_HOSTS for
    # every user who forgets proxy_set_header; passing the client's Host is
    # what nearly every real config does, so it is our default.
    host_header: Annotated[str, Template()] = "$host"
    modifier1: Annotated[int, Range(0, 255)] = 0  # uwsgi_modifier1
    cache: CacheSettings | None = None
    # nginx proxy_intercept_errors / uwsgi_intercept_errors: an upstream response with a
    # status >= 300 that has an error_page is replaced by that error page.
    intercept_errors: bool = False


@dataclass(frozen=True, slots=True)
class ReturnHandler:
    """nginx ``return``: a fixed status with an optional body, or a redirect."""

    status: Status
    body: Annotated[str, Template()] | None = None
    location: Annotated[str, Template()] | None = None  # set for 301/302/303/307/308


@dataclass(frozen=True, slots=True)
class StubStatusHandler:
    """nginx ``stub_status``: connections and requests in its exact text format, summed
    over every worker (``prometheus-nginx-exporter`` reads it unchanged)."""

    stub_status: bool = True


@dataclass(frozen=True, slots=True)
class MetricsHandler:
    """Every edge metric in the Prometheus text exposition format (docs/monitoring.md)."""

    format: Literal["prometheus"] = "prometheus"


@dataclass(frozen=True, slots=True)
class StatusPageHandler:
    """The live status page: ``html`` (polls the ``json`` one of the same server)."""

    format: Literal["html", "json"] = "html"
    json_url: Annotated[str, Text("a URL path")] = "status.json"  # what the HTML page polls


Handler: TypeAlias = (
    StaticHandler
    | ProxyHandler
    | ReturnHandler
    | StubStatusHandler
    | MetricsHandler
    | StatusPageHandler
)
# Handlers that show the server's own state: off unless a location names one, and the
# loader insists that such a location says who may read it (``access``).
OBSERVABILITY_HANDLERS = (StubStatusHandler, MetricsHandler, StatusPageHandler)


# --- response rules: error_page, add_header, gzip ----------------------------------------

HEADER_NAME = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"  # an RFC 9110 token


@dataclass(frozen=True, slots=True)
class AddHeader:
    """nginx ``add_header NAME VALUE [always]``: added to 200, 201, 204, 206, 301, 302,
    303, 304, 307 and 308 responses, to every response with ``always``.  An empty value
    (after expansion) adds nothing."""

    name: Annotated[str, Text("an HTTP header name", HEADER_NAME)]
    value: Annotated[str, Template(numbers=True)] = ""
    always: bool = False


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """nginx ``error_page CODE... [=[RESPONSE]] TARGET``, written as that one string.

    ``target`` is a URI (an internal redirect), ``@name`` (a named location) or an
    absolute URL (a redirect: 302, or ``response`` when that is a redirect status).
    ``response`` is the status sent instead of the error (``=200``); ``keep_target_status``
    is the bare ``=``: the status of whatever serves the target."""

    codes: tuple[int, ...]
    target: str
    response: int | None = None
    keep_target_status: bool = False

    @property
    def is_redirect(self) -> bool:
        return self.target.startswith(("http://", "https://", "$scheme://"))


# nginx's gzip_proxied values; ``off`` (the default: no compression for requests that came
# through a proxy, the ones with a Via header) is stored as ().
GzipProxied: TypeAlias = Literal[
    "off",
    "expired",
    "no-cache",
    "no-store",
    "private",
    "no_last_modified",
    "no_etag",
    "auth",
    "any",
]
GzipLevel: TypeAlias = Annotated[int, Range(1, 9)]


# --- protection ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccessRule:
    """One ``allow``/``deny`` line; ``network`` None means ``all``.  First match wins."""

    allow: bool
    network: IPNetwork | None = None


@dataclass(frozen=True, slots=True)
class LimitReqRule:
    """nginx ``limit_req zone=Z burst=N [nodelay | delay=D]`` plus ``limit_req_status``."""

    zone: Annotated[str, Text("a zone name"), Refers("limit_req_zones")]
    burst: Count = 0
    nodelay: bool = False
    delay: Count = 0  # requests of the burst served without delay (nginx delay=)
    status: ErrorStatus = 503


@dataclass(frozen=True, slots=True)
class LimitConnRule:
    """nginx ``limit_conn Z max`` plus ``limit_conn_status``."""

    zone: Annotated[str, Text("a zone name"), Refers("limit_conn_zones")]
    max: Positive
    status: ErrorStatus = 503


@dataclass(frozen=True, slots=True)
class LimitReqZone:
    """Shared leaky-bucket state keyed by client IP (nginx ``limit_req_zone``)."""

    name: str
    rate_milli: Annotated[int, Unit("rate")]  # milli-requests per second, as nginx stores
    max_keys: Positive = 100_000  # bounded memory: least recently seen keys go first


@dataclass(frozen=True, slots=True)
class LimitConnZone:
    """Concurrent-connection counters keyed by client IP (nginx ``limit_conn_zone``)."""

    name: str
    max_keys: Positive = 100_000


@dataclass(frozen=True, slots=True)
class RealIp:
    """nginx ``set_real_ip_from`` / ``real_ip_header`` / ``real_ip_recursive``."""

    trusted: tuple[IPNetwork, ...] = ()
    header: Annotated[str, Text("an HTTP header name", r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")] = (
        "X-Real-IP"
    )
    recursive: bool = False


# --- locations, servers, upstreams --------------------------------------------


@dataclass(frozen=True, slots=True)
class Location:
    """One ``location`` block: how it matches, and the one thing it does."""

    path: str  # the pattern without its modifier: "/static/", "\\.php$", "@app"
    match: MatchKind
    handler: Handler
    access: tuple[AccessRule, ...] = ()
    limit_req: tuple[LimitReqRule, ...] = ()
    limit_conn: tuple[LimitConnRule, ...] = ()
    client_max_body_size: Bytes | None = None  # None = the server's value
    # Response rules.  None (or an empty add_header/error_page) inherits the server's,
    # as nginx inherits a directive from the level above when a level has none of it.
    add_header: Annotated[tuple[AddHeader, ...], Keyed("NAME: value")] | None = None
    error_page: tuple[ErrorPage, ...] | None = None
    gzip: bool | None = None
    gzip_types: Annotated[tuple[str, ...], Syntax("gzip_types")] | None = None
    gzip_min_length: Bytes | None = None
    gzip_comp_level: GzipLevel | None = None
    gzip_proxied: Annotated[tuple[GzipProxied, ...], Syntax("gzip_proxied")] | None = None
    gzip_vary: bool | None = None
    access_log: bool = True  # nginx ``access_log off`` in a location (health checks)

    def __str__(self) -> str:
        modifier = {"exact": "= ", "prefix_no_regex": "^~ ", "regex": "~ ", "regex_icase": "~* "}
        return modifier.get(self.match, "") + self.path


@dataclass(frozen=True, slots=True)
class HeaderBuffers:
    """nginx ``large_client_header_buffers number size``: a request line or one
    header longer than ``size`` fails (414 / 400), as does a header block over
    ``number * size`` in total (431 here, 400 in nginx)."""

    number: Positive = 4
    size: Bytes = 8 * KIB


@dataclass(frozen=True, slots=True)
class Server:
    """One ``server`` block."""

    listen: Annotated[tuple[Listen, ...], NonEmpty("needs at least one address")] = (Listen(),)
    # Lower-cased without a trailing dot; "~regex" names are kept as written.
    server_name: tuple[Annotated[str, Syntax("server_name")], ...] = ()
    default_server: bool = False
    locations: tuple[Location, ...] = ()
    client_max_body_size: Bytes = 1 * MIB  # 0 = unlimited
    client_header_buffer_size: Bytes = 1 * KIB
    large_client_header_buffers: HeaderBuffers = HeaderBuffers()
    client_header_timeout: Seconds = 60.0
    client_body_timeout: Seconds = 60.0
    send_timeout: Seconds = 60.0
    keepalive_timeout: Seconds = 75.0  # 0 = no keep-alive; an idle HTTP/2 connection too
    keepalive_requests: Count = 1000  # per HTTP/1 connection; streams per HTTP/2 connection
    # TLS (ngx_http_ssl_module), for the listens with ``ssl``.  The certificate of the
    # listen's default server answers clients that send no SNI name or an unknown one.
    ssl_certificate: Annotated[str | None, File()] = None  # PEM: the certificate, then its chain
    ssl_certificate_key: Annotated[str | None, File()] = None  # PEM, not encrypted
    ssl_protocols: Annotated[tuple[TlsProtocol, ...], NonEmpty("needs at least one protocol")] = (
        "TLSv1.2",
        "TLSv1.3",
    )
    ssl_ciphers: Annotated[str, Text("an OpenSSL cipher list")] = MODERN_CIPHERS
    # nginx's default is off; ours is on because our list is ordered strongest first.
    ssl_prefer_server_ciphers: bool = True
    ssl_session_tickets: bool = True
    # HTTP/2 (ngx_http_v2_module); the header list is bounded by large_client_header_buffers
    # and an idle connection by keepalive_timeout, as in nginx >= 1.19.7.
    http2_max_concurrent_streams: Positive = 128
    http2_chunk_size: Annotated[int, Unit("size"), Range(1, 16 * MIB - 1)] = 8 * KIB
    http2_body_preread_size: Annotated[int, Unit("size"), Range(0, 2**31 - 1)] = 64 * KIB
    # Response rules, inherited by the locations that do not set their own (nginx defaults).
    add_header: Annotated[tuple[AddHeader, ...], Keyed("NAME: value")] = ()
    error_page: tuple[ErrorPage, ...] = ()
    gzip: bool = False
    gzip_types: Annotated[tuple[str, ...], Syntax("gzip_types")] = ("text/html",)
    gzip_min_length: Bytes = 20
    gzip_comp_level: GzipLevel = 1
    gzip_proxied: Annotated[tuple[GzipProxied, ...], Syntax("gzip_proxied")] = ()
    gzip_vary: bool = False


@dataclass(frozen=True, slots=True)
class UpstreamServer:
    """One ``server`` line of an upstream block.  A host name may resolve to several peers."""

    endpoint: Endpoint
    weight: Positive = 1
    max_fails: Count = 1  # 0 disables failure accounting
    fail_timeout: Seconds = 10.0
    backup: bool = False
    down: bool = False
    max_conns: Count = 0  # 0 = unlimited


@dataclass(frozen=True, slots=True)
class Upstream:
    """A named group of servers and how requests are spread over them."""

    name: str
    servers: Annotated[
        tuple[UpstreamServer, ...], NonEmpty("an upstream needs at least one server")
    ]
    balance: Balance = "round_robin"
    # Host names are re-resolved this often (seconds) so `docker compose up
    # --scale` is picked up live; 0 (or off) = resolve once at start.
    resolve: Annotated[float, Unit("duration", off=0.0)] = 5.0
    keepalive: Count = 32  # idle pooled connections kept per worker (HTTP upstreams)
    keepalive_timeout: Seconds = UPSTREAM_KEEPALIVE_TIMEOUT


@dataclass(frozen=True, slots=True)
class LogFormatSpec:
    """nginx ``log_format NAME [escape=default|json|none] STRING``: ``$variables`` of
    ``edge.accesslog.LOG_VARIABLES`` between literal text."""

    name: str
    format: Annotated[str, Text("a log format string")]
    escape: LogEscape = "default"


@dataclass(frozen=True, slots=True)
class RequestIdSettings:
    """``$request_id`` (32 hex digits, new per request) and where it goes."""

    # Send it upstream: the uwsgi var HTTP_X_REQUEST_ID, the HTTP header X-Request-ID.
    to_upstream: bool = False
    # Use the client's X-Request-ID (1..128 visible ASCII characters) instead of a new one.
    trust_incoming: bool = False


@dataclass(frozen=True, slots=True)
class AccessLogSettings:
    path: Annotated[str | None, LogTarget(off=True)] = "stdout"  # None = off
    format: LogFormat = "combined"


@dataclass(frozen=True, slots=True)
class ErrorLogSettings:
    path: Annotated[str, LogTarget()] = "stderr"
    level: LogLevel = "error"


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    servers: Annotated[tuple[Server, ...], NonEmpty("at least one server is required")]
    upstreams: Annotated[tuple[Upstream, ...], Keyed("names")] = ()
    limit_req_zones: Annotated[tuple[LimitReqZone, ...], Keyed("names")] = ()
    limit_conn_zones: Annotated[tuple[LimitConnZone, ...], Keyed("names")] = ()
    worker_processes: Annotated[int | Literal["auto"], Syntax("worker_processes")] = 1
    worker_connections: Positive = 512
    access_log: AccessLogSettings = AccessLogSettings()
    log_formats: Annotated[tuple[LogFormatSpec, ...], Keyed("names")] = ()
    error_log: ErrorLogSettings = ErrorLogSettings()
    real_ip: RealIp = RealIp()
    request_id: RequestIdSettings = RequestIdSettings()
    # The file this came from, so SIGHUP re-reads the same source.
    source: str | None = field(default=None, compare=False)

    def upstream(self, name: str) -> Upstream:
        """The upstream called ``name`` (the loader guarantees every reference exists)."""
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        raise KeyError(name)
