"""The benchmark's case table and targets, as data (issues 5, 8 and 9).

A *stack* is a chain of servers (front -> backend), an *endpoint* is what wrk
requests through it, and a *case* is one (stack, endpoint, connections)
triple.  Cases that share a stack and an app run against one deployment, so a
Django backend starts once for the sample app's three views.

Every server runs one worker process; the figures compare per-core
efficiency.  ``anchor`` names the case each of ours is divided by in the
table; ``TARGETS`` are the issues' pass/fail ratios.

Two Django apps: the sample app (``sampleapp/``, nine middlewares, sessions,
the ORM) and a minimal one (``bench/apps/django_min``: no middleware, no
apps, one view), whose hello shows what the server costs under Django rather
than what the middleware stack does.

gunicorn behind a proxy uses the gthread worker only: the issue asks for
``proxy_pass`` with upstream keep-alive, and the sync worker answers every
request with ``Connection: close``, so nginx would open a new upstream
connection per request whatever the upstream block says.  Both workers run
direct, where "best of sync/gthread" is the anchor.

The TLS group (issue 10) puts TLS and HTTP/2 in front, with one certificate
(EC P-256) for both servers, and is driven by h2load (``bench/h2load.py``): 10
connections of 10 streams each, 100 requests in flight.  Its upstreams still
speak uwsgi.

edge -> appserver runs twice: with the default upstream ``keepalive`` (32),
where edge offers persistent uwsgi connections (docs/uwsgi-keepalive.md), and
with ``keepalive: 0``, standard one-shot packets, as nginx sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

App: TypeAlias = Literal["django", "django-min", "raw", "static"]
Front: TypeAlias = Literal["direct", "nginx", "edge"]
Backend: TypeAlias = Literal["appserver", "uwsgi", "gunicorn-sync", "gunicorn-gthread"]
Protocol: TypeAlias = Literal["http", "uwsgi"]
Group: TypeAlias = Literal["views", "static", "overload", "tls"]

CONNECTIONS = 32
OVERLOAD_CONNECTIONS = 256
GTHREAD_THREADS = 4  # gunicorn's docs suggest 2-4 threads per core
UPSTREAM_KEEPALIVE = 32  # edge's default, and nginx's usual setting
H2_CLIENTS = 10  # h2load connections for the TLS + HTTP/2 cases
H2_STREAMS = 10  # concurrent streams on each


@dataclass(frozen=True, slots=True)
class Stack:
    name: str
    label: str
    front: Front
    backend: Backend | None  # None: the front serves files itself
    protocol: Protocol  # front -> backend ("http" when direct)
    ours: bool
    # Idle connections the front keeps per upstream (``keepalive`` of nginx and
    # edge).  For edge and a uwsgi upstream it also decides the keep-alive offer
    # (docs/uwsgi-keepalive.md): above 0 edge offers it, 0 sends one-shot packets.
    upstream_keepalive: int = UPSTREAM_KEEPALIVE
    # The front terminates TLS and speaks HTTP/2 (ALPN h2); measured with h2load.
    tls: bool = False
    # edge with a /metrics location, so its counters are on (issue 11: < 5 % of req/s).
    metrics: bool = False
    # appserver with metrics-http on, so its workers count request durations too (issue 11).
    appserver_metrics: bool = False


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    app: App
    path: str
    size: int | None = None  # exact body size to check (static files)


@dataclass(frozen=True, slots=True)
class Case:
    stack: Stack
    endpoint: Endpoint
    group: Group
    connections: int = CONNECTIONS
    anchor: str | None = None  # id of the case this one is divided by
    quick: bool = True  # run by --quick (otherwise listed as not run)

    @property
    def id(self) -> str:
        suffix = f"@{self.connections}" if self.group == "overload" else ""
        if self.group == "tls":
            suffix = f"@{H2_CLIENTS}x{H2_STREAMS}"
        return f"{self.stack.name}/{self.endpoint.name}{suffix}"


# -- stacks ---------------------------------------------------------------------

APPSERVER = Stack("appserver", "appserver --http-socket", "direct", "appserver", "http", True)
APPSERVER_METRICS = Stack(
    "appserver-metrics",
    "appserver --http-socket, metrics-http on",
    "direct",
    "appserver",
    "http",
    True,
    appserver_metrics=True,
)
EDGE_APPSERVER = Stack(
    "edge+appserver", "edge -> uwsgi (persistent) -> appserver", "edge", "appserver", "uwsgi", True
)
EDGE_APPSERVER_METRICS = Stack(
    "edge+appserver-metrics",
    "edge -> uwsgi (persistent) -> appserver, metrics on",
    "edge",
    "appserver",
    "uwsgi",
    True,
    metrics=True,
)
EDGE_APPSERVER_ONESHOT = Stack(
    "edge+appserver-oneshot",
    "edge -> uwsgi (one-shot) -> appserver",
    "edge",
    "appserver",
    "uwsgi",
    True,
    upstream_keepalive=0,
)
NGINX_APPSERVER = Stack(
    "nginx+appserver", "nginx -> uwsgi -> appserver", "nginx", "appserver", "uwsgi", True
)
UWSGI = Stack("uwsgi", "uWSGI --http-socket", "direct", "uwsgi", "http", False)
NGINX_UWSGI = Stack("nginx+uwsgi", "nginx -> uwsgi -> uWSGI", "nginx", "uwsgi", "uwsgi", False)
GUNICORN_SYNC = Stack("gunicorn-sync", "gunicorn sync", "direct", "gunicorn-sync", "http", False)
GUNICORN_GTHREAD = Stack(
    "gunicorn-gthread", "gunicorn gthread", "direct", "gunicorn-gthread", "http", False
)
NGINX_GUNICORN = Stack(
    "nginx+gunicorn",
    "nginx -> http -> gunicorn gthread",
    "nginx",
    "gunicorn-gthread",
    "http",
    False,
)
EDGE_GUNICORN = Stack(
    "edge+gunicorn", "edge -> http -> gunicorn gthread", "edge", "gunicorn-gthread", "http", True
)
EDGE_GUNICORN_UWSGI = Stack(
    "edge+gunicorn-uwsgi",
    "edge -> uwsgi -> gunicorn --protocol uwsgi",
    "edge",
    "gunicorn-gthread",
    "uwsgi",
    True,
)
EDGE_STATIC = Stack("edge", "edge (files)", "edge", None, "http", True)
EDGE_STATIC_METRICS = Stack(
    "edge-metrics", "edge (files), metrics on", "edge", None, "http", True, metrics=True
)
NGINX_STATIC = Stack("nginx", "nginx (files)", "nginx", None, "http", False)
EDGE_TLS_STATIC = Stack(
    "edge-h2", "edge (files), TLS + HTTP/2", "edge", None, "http", True, tls=True
)
NGINX_TLS_STATIC = Stack(
    "nginx-h2", "nginx (files), TLS + HTTP/2", "nginx", None, "http", False, tls=True
)
EDGE_TLS_APPSERVER = Stack(
    "edge-h2+appserver",
    "edge (TLS + HTTP/2) -> uwsgi (persistent) -> appserver",
    "edge",
    "appserver",
    "uwsgi",
    True,
    tls=True,
)
NGINX_TLS_UWSGI = Stack(
    "nginx-h2+uwsgi",
    "nginx (TLS + HTTP/2) -> uwsgi -> uWSGI",
    "nginx",
    "uwsgi",
    "uwsgi",
    False,
    tls=True,
)
GUNICORN_WHITENOISE = Stack(
    "gunicorn+whitenoise",
    "gunicorn gthread + WhiteNoise",
    "direct",
    "gunicorn-gthread",
    "http",
    False,
)

# -- endpoints ------------------------------------------------------------------

RAW_HELLO = Endpoint("raw-hello", "raw", "/")
DJANGO_MIN = Endpoint("django-min", "django-min", "/hello")  # bench/apps/django_min
DJANGO_HELLO = Endpoint("django-hello", "django", "/hello")  # the sample app's /hello
DJANGO_JSON = Endpoint("django-json", "django", "/api/items")
DJANGO_TEMPLATE = Endpoint("django-template", "django", "/template")
STATIC_1K = Endpoint("static-1k", "static", "/static/file-1k.txt", 1024)
STATIC_100K = Endpoint("static-100k", "static", "/static/file-100k.txt", 100 * 1024)

HELLOS = (RAW_HELLO, DJANGO_MIN, DJANGO_HELLO)
VIEW_ENDPOINTS = (*HELLOS, DJANGO_JSON, DJANGO_TEMPLATE)
STATIC_FILES = (STATIC_1K, STATIC_100K)

# Each view stack, the stack its ratio is taken against, its endpoints, and
# the ones --quick runs: the three hellos nearly everywhere; the full run adds
# the sample app's JSON and template views.  Quick keeps every case a target
# needs (a unit test holds it to that) and must stay near 3 minutes, so it
# leaves out the hellos of gunicorn's uwsgi protocol and gunicorn's direct raw
# hello, which no target reads.
DJANGO_HELLOS = (DJANGO_MIN, DJANGO_HELLO)
VIEW_STACKS: tuple[tuple[Stack, Stack | None, tuple[Endpoint, ...], tuple[Endpoint, ...]], ...] = (
    (APPSERVER, UWSGI, VIEW_ENDPOINTS, HELLOS),
    (EDGE_APPSERVER, NGINX_UWSGI, VIEW_ENDPOINTS, HELLOS),
    (EDGE_APPSERVER_ONESHOT, NGINX_UWSGI, HELLOS, HELLOS),
    (NGINX_APPSERVER, NGINX_UWSGI, VIEW_ENDPOINTS, HELLOS),
    (UWSGI, None, VIEW_ENDPOINTS, HELLOS),
    (NGINX_UWSGI, None, VIEW_ENDPOINTS, HELLOS),
    (GUNICORN_SYNC, None, VIEW_ENDPOINTS, DJANGO_HELLOS),
    (GUNICORN_GTHREAD, None, VIEW_ENDPOINTS, DJANGO_HELLOS),
    (NGINX_GUNICORN, None, VIEW_ENDPOINTS, HELLOS),
    (EDGE_GUNICORN, NGINX_GUNICORN, VIEW_ENDPOINTS, HELLOS),
    (EDGE_GUNICORN_UWSGI, NGINX_GUNICORN, VIEW_ENDPOINTS, ()),
)

STATIC_STACKS: tuple[tuple[Stack, Stack | None], ...] = (
    (EDGE_STATIC, NGINX_STATIC),
    (NGINX_STATIC, None),
    (GUNICORN_WHITENOISE, None),
)


def _anchor(anchor: Stack | None, endpoint: Endpoint) -> str | None:
    return f"{anchor.name}/{endpoint.name}" if anchor else None


def _view_cases() -> list[Case]:
    return [
        Case(
            stack,
            endpoint,
            "views",
            anchor=_anchor(anchor, endpoint),
            quick=endpoint in quick,
        )
        for stack, anchor, endpoints, quick in VIEW_STACKS
        for endpoint in endpoints
    ]


def _static_cases() -> list[Case]:
    return [
        Case(stack, endpoint, "static", anchor=_anchor(anchor, endpoint))
        for stack, anchor in STATIC_STACKS
        for endpoint in STATIC_FILES
    ]


TLS_HELLOS = (RAW_HELLO, DJANGO_MIN)


def _tls_cases() -> list[Case]:
    static_anchor = Case(NGINX_TLS_STATIC, STATIC_1K, "tls", H2_CLIENTS)
    hello_anchors = [Case(NGINX_TLS_UWSGI, e, "tls", H2_CLIENTS) for e in TLS_HELLOS]
    return [
        Case(EDGE_TLS_STATIC, STATIC_1K, "tls", H2_CLIENTS, anchor=static_anchor.id),
        static_anchor,
        *(
            Case(EDGE_TLS_APPSERVER, anchor.endpoint, "tls", H2_CLIENTS, anchor=anchor.id)
            for anchor in hello_anchors
        ),
        *hello_anchors,
    ]


def _overload_cases() -> list[Case]:
    anchor = Case(NGINX_UWSGI, DJANGO_HELLO, "overload", OVERLOAD_CONNECTIONS)
    return [
        Case(EDGE_APPSERVER, DJANGO_HELLO, "overload", OVERLOAD_CONNECTIONS, anchor=anchor.id),
        anchor,
    ]


def _metrics_cases() -> list[Case]:
    # Metrics on against off (issue 11): each divided by its metrics-off twin. Not in
    # --quick; run them with --only 'edge*/static-1k' --only 'edge+appserver*/raw-hello'
    # --only 'appserver*/raw-hello'.
    return [
        Case(APPSERVER_METRICS, RAW_HELLO, "views", anchor="appserver/raw-hello", quick=False),
        Case(EDGE_STATIC_METRICS, STATIC_1K, "static", anchor="edge/static-1k", quick=False),
        Case(
            EDGE_APPSERVER_METRICS,
            RAW_HELLO,
            "views",
            anchor="edge+appserver/raw-hello",
            quick=False,
        ),
    ]


CASES: tuple[Case, ...] = (
    *_view_cases(),
    *_static_cases(),
    *_metrics_cases(),
    *_overload_cases(),
    *_tls_cases(),
)


# -- targets --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RatioTarget:
    """ours / best(anchors) in requests per second must be at least ``minimum``."""

    name: str
    ours: str
    anchors: tuple[str, ...]
    minimum: float


@dataclass(frozen=True, slots=True)
class LimitTarget:
    """A case must finish with at most ``max_errors`` errors and p99 under ``max_p99_ms``."""

    name: str
    case: str
    max_errors: int
    max_p99_ms: float


@dataclass(frozen=True, slots=True)
class CpuTarget:
    """CPU µs per request of ``program``'s workers in ``ours``, over ``anchor_program``'s
    in ``anchor``, must be at most ``maximum``."""

    name: str
    ours: str
    program: str
    anchor: str
    anchor_program: str
    maximum: float


Target: TypeAlias = RatioTarget | LimitTarget | CpuTarget


def _ratio(
    name: str, ours: Stack, anchors: tuple[Stack, ...], endpoint: Endpoint, minimum: float
) -> RatioTarget:
    return RatioTarget(
        f"{name}, {endpoint.name}",
        f"{ours.name}/{endpoint.name}",
        tuple(f"{anchor.name}/{endpoint.name}" for anchor in anchors),
        minimum,
    )


def _tls_ratio(
    name: str, ours: Stack, anchor: Stack, endpoint: Endpoint, minimum: float
) -> RatioTarget:
    suffix = f"@{H2_CLIENTS}x{H2_STREAMS}"
    return RatioTarget(
        f"{name}, {endpoint.name}",
        f"{ours.name}/{endpoint.name}{suffix}",
        (f"{anchor.name}/{endpoint.name}{suffix}",),
        minimum,
    )


def _targets() -> list[Target]:
    """Issues 8 and 9, with their ratios, and what issue 5 set that was met and still stands."""
    gunicorns = (GUNICORN_SYNC, GUNICORN_GTHREAD)
    overload = _overload_cases()[0]
    return [
        # issue 8: the edge
        _ratio("edge vs nginx", EDGE_STATIC, (NGINX_STATIC,), STATIC_1K, 0.5),
        _ratio("edge vs nginx", EDGE_STATIC, (NGINX_STATIC,), STATIC_100K, 0.8),
        *(
            _ratio("edge -> appserver vs nginx -> uWSGI", EDGE_APPSERVER, (NGINX_UWSGI,), e, 1.0)
            for e in HELLOS
        ),
        *(
            _ratio(
                "edge -> gunicorn vs nginx -> gunicorn", EDGE_GUNICORN, (NGINX_GUNICORN,), e, 1.0
            )
            for e in HELLOS
        ),
        LimitTarget(
            f"overload at {overload.connections} connections through edge",
            overload.id,
            max_errors=0,
            max_p99_ms=500.0,
        ),
        # issue 9: appserver
        _ratio("appserver vs uWSGI behind nginx", NGINX_APPSERVER, (NGINX_UWSGI,), RAW_HELLO, 0.9),
        _ratio("appserver vs uWSGI behind nginx", NGINX_APPSERVER, (NGINX_UWSGI,), DJANGO_MIN, 1.0),
        *(
            _ratio("appserver vs uWSGI --http-socket, direct", APPSERVER, (UWSGI,), e, 1.1)
            for e in (DJANGO_HELLO, DJANGO_MIN)
        ),
        *(
            _ratio("appserver vs best gunicorn, direct", APPSERVER, gunicorns, e, 1.5)
            for e in (DJANGO_HELLO, DJANGO_MIN)
        ),
        CpuTarget(
            f"appserver vs uWSGI worker CPU per request behind nginx, {RAW_HELLO.name}",
            f"{NGINX_APPSERVER.name}/{RAW_HELLO.name}",
            "appserver",
            f"{NGINX_UWSGI.name}/{RAW_HELLO.name}",
            "uwsgi",
            maximum=1.5,
        ),
        # issue 10: TLS and HTTP/2 in front
        _tls_ratio(
            "edge vs nginx, TLS + HTTP/2", EDGE_TLS_STATIC, NGINX_TLS_STATIC, STATIC_1K, 0.5
        ),
        *(
            _tls_ratio(
                "edge -> appserver vs nginx -> uWSGI, TLS + HTTP/2",
                EDGE_TLS_APPSERVER,
                NGINX_TLS_UWSGI,
                e,
                1.0,
            )
            for e in TLS_HELLOS
        ),
        # issue 5: met in its last full run, and not superseded by issues 8 and 9
        _ratio(
            "edge vs gunicorn + WhiteNoise", EDGE_STATIC, (GUNICORN_WHITENOISE,), STATIC_1K, 3.0
        ),
    ]


TARGETS: tuple[Target, ...] = tuple(_targets())


def target_cases(target: Target) -> tuple[str, ...]:
    """The ids of every case a target reads."""
    if isinstance(target, RatioTarget):
        return (target.ours, *target.anchors)
    if isinstance(target, LimitTarget):
        return (target.case,)
    return (target.ours, target.anchor)


def case_by_id() -> dict[str, Case]:
    return {case.id: case for case in CASES}
