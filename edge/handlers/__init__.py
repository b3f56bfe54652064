"""Location handlers, and the registry the front uses to find the one for a location.

The front (``edge.protocol``) never imports a handler module itself: it asks
``HandlerRegistry.handler_for(location)``, which builds one handler object per
location when a worker starts and keeps it for the worker's life (the config
is immutable; a reload starts new workers).  The mapping is:

    StaticHandler  -> edge.handlers.static.StaticFiles(location, settings)
    StubStatusHandler, MetricsHandler, StatusPageHandler
                   -> edge.handlers.observe.observer_for(location, state)
    ReturnHandler  -> edge.handlers.fixed_response.FixedResponse(location, settings)
    ProxyHandler   -> edge.handlers.proxy.ProxyHandlerImpl(location, runtime)

where ``runtime`` is the worker's one ``edge.upstream.pool.UpstreamRuntime``
(``UpstreamRuntime(config, error_log)``, ``await start()`` / ``await close()``),
created only when the config has a proxied location.  Those two modules are
imported lazily: when they are missing or fail to import, proxied locations
answer 502 and the error log says why, while static files keep working.

Every handler has ``async handle(exchange)`` (``edge.exchange.Handler``).  A
handler may also set ``reads_body = False``: the front then reads and
discards the request body *before* calling it, as nginx's static and return
handlers do, so a malformed or oversized body is refused (400/413) whatever
the location.  Handlers without the attribute read the body themselves.

A handler that can often answer from memory has ``respond_now(head, path)``
as well: given the parsed head of a request without a body and its
normalized path, it returns a ``FastAnswer`` (status, the header lines that
follow ``Date`` without ``Connection``, each ending in CRLF, and the body) or
None when the request needs ``handle`` (``edge.pipeline.Pipeline.answer_now``).
It must decline everything it would not answer the same way as ``handle``.

What handlers leave for the logs: the proxy fills ``request.upstream`` (an
``edge.exchange.UpstreamReport``: the peers tried, the last status, the
connect/header/response times, the cache status); a handler that ends
without a response (``return 444``) sets ``request.logged_status``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, Protocol

from edge.config.schema import (
    OBSERVABILITY_HANDLERS,
    EdgeConfig,
    Location,
    ProxyHandler,
    ReturnHandler,
    StaticHandler,
)
from edge.exchange import Exchange, UpstreamError

if TYPE_CHECKING:
    from edge.errorlog import ErrorLog
    from edge.state import ServerState

# respond_now's answer: (status, header lines after Date without Connection, body).
FastAnswer = tuple[int, bytes, bytes]

PROXY_MODULE = "edge.handlers.proxy"
RUNTIME_MODULE = "edge.upstream.pool"


class LocationHandler(Protocol):
    async def handle(self, exchange: Exchange) -> None: ...


class InternalRedirect(Exception):
    """Serve the request from another URI (``/index.html?x``) or named location (``@app``).

    Raised before the response starts (``try_files`` fallback); the front
    re-matches the location, checks its ``access`` again and calls its handler,
    as nginx's ``ngx_http_internal_redirect`` does.
    """

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class _Unavailable:
    """Stands in for a proxy handler that could not be built: every request is a 502."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def handle(self, exchange: Exchange) -> None:
        raise UpstreamError(f"proxy handler unavailable: {self.reason}", status=502)


class HandlerRegistry:
    """One handler object per location of one config, for one worker."""

    def __init__(self, config: EdgeConfig, error_log: ErrorLog) -> None:
        self.config = config
        self.error_log = error_log
        self.runtime: Any = None
        self.state: ServerState | None = None  # set by the worker's state (observability)
        self._proxy_problem: str | None = None
        self._handlers: dict[int, tuple[Location, LocationHandler]] = {}

    async def start(self) -> None:
        """Build every handler; start the upstream runtime when something is proxied."""
        locations = [loc for server in self.config.servers for loc in server.locations]
        if any(isinstance(loc.handler, ProxyHandler) for loc in locations):
            await self._start_runtime()
        for location in locations:
            self._handlers[id(location)] = (location, self._build(location))

    async def _start_runtime(self) -> None:
        try:
            module = importlib.import_module(RUNTIME_MODULE)
            runtime = module.UpstreamRuntime(self.config, self.error_log)
            await runtime.start()
        except ImportError as exc:
            self._proxy_problem = f"{RUNTIME_MODULE} cannot be imported ({exc})"
        except Exception as exc:  # a worker boundary: log it and serve the other locations
            self._proxy_problem = f"the upstream runtime failed to start ({exc!r})"
            self.error_log.log("alert", f"upstream runtime failed to start: {exc!r}", exc=exc)
        else:
            self.runtime = runtime
            return
        self.error_log.log(
            "alert", f"proxied locations will answer 502: {self._proxy_problem}", always=True
        )

    def _build(self, location: Location) -> LocationHandler:
        settings = location.handler
        if isinstance(settings, StaticHandler):
            from edge.handlers.static import StaticFiles

            return StaticFiles(location, settings)
        if isinstance(settings, ReturnHandler):
            from edge.handlers.fixed_response import FixedResponse

            return FixedResponse(location, settings)
        if isinstance(settings, OBSERVABILITY_HANDLERS):
            from edge.handlers.observe import observer_for

            assert self.state is not None, "observability handlers need the worker's state"
            return observer_for(location, self.state)
        if self._proxy_problem is not None or self.runtime is None:
            return _Unavailable(self._proxy_problem or "no upstream runtime")
        try:
            module = importlib.import_module(PROXY_MODULE)
            handler: LocationHandler = module.ProxyHandlerImpl(location, self.runtime)
        except ImportError as exc:
            self._proxy_problem = f"{PROXY_MODULE} cannot be imported ({exc})"
            self.error_log.log(
                "alert", f"proxied locations will answer 502: {self._proxy_problem}", always=True
            )
            return _Unavailable(self._proxy_problem)
        return handler

    def handler_for(self, location: Location) -> LocationHandler:
        entry = self._handlers.get(id(location))
        if entry is None or entry[0] is not location:
            # A location of another config object (tests build registries by hand).
            handler = self._build(location)
            self._handlers[id(location)] = (location, handler)
            return handler
        return entry[1]

    async def close(self) -> None:
        for _location, handler in self._handlers.values():
            close = getattr(handler, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result
        self._handlers.clear()
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            await runtime.close()


# --- the small pages nginx sends on its own ------------------------------------------


def special_response_body(status: int, reason: str) -> bytes:
    """nginx's built-in error/redirect page (``ngx_http_special_response.c``), naming edge."""
    title = f"{status} {reason}".rstrip()
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>edge</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode("ascii")
