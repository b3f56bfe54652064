"""The benchmark's case table and targets, as data (issue 5).

A *stack* is a chain of servers (front -> backend), an *endpoint* is what wrk
requests through it, and a *case* is one (stack, endpoint, connections)
triple.  Cases that share a stack and an app run against one deployment, so a
Django backend starts once for its three views.

Every server runs one worker process; the figures compare per-core
efficiency.  ``anchor`` names the case each of ours is divided by in the
table; ``TARGETS`` are the issue's pass/fail ratios.

gunicorn behind a proxy uses the gthread worker only: the issue asks for
``proxy_pass`` with upstream keep-alive, and the sync worker answers every
request with ``Connection: close``, so nginx would open a new upstream
connection per request whatever the upstream block says.  Both workers run
direct, where "best of sync/gthread" is the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

App: TypeAlias = Literal["django", "raw", "static"]
Front: TypeAlias = Literal["direct", "nginx", "edge"]
Backend: TypeAlias = Literal["appserver", "uwsgi", "gunicorn-sync", "gunicorn-gthread"]
Protocol: TypeAlias = Literal["http", "uwsgi"]
Group: TypeAlias = Literal["views", "static", "overload"]

CONNECTIONS = 32
OVERLOAD_CONNECTIONS = 256
GTHREAD_THREADS = 4  # gunicorn's docs suggest 2-4 threads per core


@dataclass(frozen=True, slots=True)
class Stack:
    name: str
    label: str
    front: Front
    backend: Backend | None  # None: the front serves files itself
    protocol: Protocol  # front -> backend ("http" when direct)
    ours: bool


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
        return f"{self.stack.name}/{self.endpoint.name}{suffix}"


# -- stacks ---------------------------------------------------------------------

APPSERVER = Stack("appserver", "appserver --http-socket", "direct", "appserver", "http", True)
EDGE_APPSERVER = Stack(
    "edge+appserver", "edge -> uwsgi -> appserver", "edge", "appserver", "uwsgi", True
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
NGINX_STATIC = Stack("nginx", "nginx (files)", "nginx", None, "http", False)
GUNICORN_WHITENOISE = Stack(
    "gunicorn+whitenoise",
    "gunicorn gthread + WhiteNoise",
    "direct",
    "gunicorn-gthread",
    "http",
    False,
)

# -- endpoints ------------------------------------------------------------------

DJANGO_HELLO = Endpoint("django-hello", "django", "/hello")
DJANGO_JSON = Endpoint("django-json", "django", "/api/items")
DJANGO_TEMPLATE = Endpoint("django-template", "django", "/template")
RAW_HELLO = Endpoint("raw-hello", "raw", "/")
STATIC_1K = Endpoint("static-1k", "static", "/static/file-1k.txt", 1024)
STATIC_100K = Endpoint("static-100k", "static", "/static/file-100k.txt", 100 * 1024)

DJANGO_VIEWS = (DJANGO_HELLO, DJANGO_JSON, DJANGO_TEMPLATE)
VIEW_ENDPOINTS = (*DJANGO_VIEWS, RAW_HELLO)
STATIC_FILES = (STATIC_1K, STATIC_100K)

# Each view stack, the stack its ratio is taken against, and whether --quick
# runs its JSON and template views (the hellos always run).  Quick keeps every
# case a target needs; the whole quick run must stay under 3 minutes.
VIEW_STACKS: tuple[tuple[Stack, Stack | None, bool], ...] = (
    (APPSERVER, UWSGI, True),
    (EDGE_APPSERVER, NGINX_UWSGI, True),
    (NGINX_APPSERVER, NGINX_UWSGI, True),
    (UWSGI, None, False),
    (NGINX_UWSGI, None, True),
    (GUNICORN_SYNC, None, True),
    (GUNICORN_GTHREAD, None, True),
    (NGINX_GUNICORN, None, False),
    (EDGE_GUNICORN, NGINX_GUNICORN, False),
    (EDGE_GUNICORN_UWSGI, NGINX_GUNICORN, False),
)

STATIC_STACKS: tuple[tuple[Stack, Stack | None], ...] = (
    (EDGE_STATIC, NGINX_STATIC),
    (NGINX_STATIC, None),
    (GUNICORN_WHITENOISE, None),
)


def _view_cases() -> list[Case]:
    cases = []
    for stack, anchor, quick_views in VIEW_STACKS:
        for endpoint in VIEW_ENDPOINTS:
            cases.append(
                Case(
                    stack,
                    endpoint,
                    "views",
                    anchor=f"{anchor.name}/{endpoint.name}" if anchor else None,
                    quick=quick_views or endpoint in (DJANGO_HELLO, RAW_HELLO),
                )
            )
    return cases


def _static_cases() -> list[Case]:
    return [
        Case(stack, endpoint, "static", anchor=f"{anchor.name}/{endpoint.name}" if anchor else None)
        for stack, anchor in STATIC_STACKS
        for endpoint in STATIC_FILES
    ]


def _overload_cases() -> list[Case]:
    anchor = Case(NGINX_UWSGI, DJANGO_HELLO, "overload", OVERLOAD_CONNECTIONS)
    return [
        Case(EDGE_APPSERVER, DJANGO_HELLO, "overload", OVERLOAD_CONNECTIONS, anchor=anchor.id),
        anchor,
    ]


CASES: tuple[Case, ...] = (*_view_cases(), *_static_cases(), *_overload_cases())


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


Target: TypeAlias = RatioTarget | LimitTarget


def _targets() -> list[Target]:
    targets: list[Target] = []
    for endpoint in VIEW_ENDPOINTS:
        minimum = 0.8 if endpoint is RAW_HELLO else 1.0
        targets.append(
            RatioTarget(
                f"appserver vs uWSGI behind nginx, {endpoint.name}",
                f"{NGINX_APPSERVER.name}/{endpoint.name}",
                (f"{NGINX_UWSGI.name}/{endpoint.name}",),
                minimum,
            )
        )
    for endpoint in DJANGO_VIEWS:
        targets.append(
            RatioTarget(
                f"appserver vs best gunicorn, direct, {endpoint.name}",
                f"{APPSERVER.name}/{endpoint.name}",
                (
                    f"{GUNICORN_SYNC.name}/{endpoint.name}",
                    f"{GUNICORN_GTHREAD.name}/{endpoint.name}",
                ),
                1.5,
            )
        )
    for endpoint, minimum in ((STATIC_1K, 0.5), (STATIC_100K, 0.7)):
        targets.append(
            RatioTarget(
                f"edge vs nginx, {endpoint.name}",
                f"{EDGE_STATIC.name}/{endpoint.name}",
                (f"{NGINX_STATIC.name}/{endpoint.name}",),
                minimum,
            )
        )
    for endpoint in STATIC_FILES:
        targets.append(
            RatioTarget(
                f"edge vs gunicorn + WhiteNoise, {endpoint.name}",
                f"{EDGE_STATIC.name}/{endpoint.name}",
                (f"{GUNICORN_WHITENOISE.name}/{endpoint.name}",),
                3.0,
            )
        )
    for endpoint in DJANGO_VIEWS:
        targets.append(
            RatioTarget(
                f"edge -> appserver vs nginx -> uWSGI, {endpoint.name}",
                f"{EDGE_APPSERVER.name}/{endpoint.name}",
                (f"{NGINX_UWSGI.name}/{endpoint.name}",),
                1.0,
            )
        )
    overload = _overload_cases()[0]
    targets.append(
        LimitTarget(
            f"overload at {overload.connections} connections through edge",
            overload.id,
            max_errors=0,
            max_p99_ms=1000.0,
        )
    )
    return targets


TARGETS: tuple[Target, ...] = tuple(_targets())


def case_by_id() -> dict[str, Case]:
    return {case.id: case for case in CASES}
