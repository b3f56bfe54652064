"""error_page and add_header: what a location adds to or puts in place of a response.

Theory of operation
-------------------
``rules_for(server, location)`` resolves nginx's inheritance once per location
(a location with its own ``add_header`` / ``error_page`` / ``gzip_*`` replaces
the server's, one without inherits it) into a ``ResponseRules``; None when
nothing is configured, which is what keeps the common path free of work.

*add_header* goes through ``HeaderSink``, a ``ResponseSink`` in front of the
writer: on ``send_head`` it appends the configured fields whose status
qualifies (nginx: 200, 201, 204, 206, 301, 302, 303, 304, 307, 308; every
status with ``always``), with ``$variables`` expanded and empty values left
out.  Constant fields are also kept joined (``fast_fields``) so that
``Pipeline.answer_now`` adds them without a task.

*error_page* is the pipeline's: when a request ends with an ``EdgeError``
(a handler's 404, an access 403, an upstream's 502, or an upstream response
intercepted by ``proxy_intercept_errors``) whose status has an error page,
the pipeline logs the error and serves the page instead: an absolute URL is
a redirect (302 or the ``=`` code given), a URI or ``@name`` an internal
redirect (the method becomes GET, except HEAD, for a URI) whose response
carries the error's status, or the ``=`` code, or with a bare ``=`` the
status of whatever serves the page.  As nginx without
``recursive_error_pages``, an error while serving an error page is not
redirected again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.config.schema import ErrorPage, Location, Server
from edge.exchange import EdgeError, Request, ResponseSink, SinkFilter
from edge.handlers import special_response_body
from edge.variables import Template, compile_template, expand

if TYPE_CHECKING:
    from edge.pipeline import Pipeline, RequestCycle

# nginx's ngx_http_headers_filter: the statuses add_header applies to without "always".
ADD_HEADER_STATUSES = frozenset((200, 201, 204, 206, 301, 302, 303, 304, 307, 308))


class InterceptedError(EdgeError):
    """An upstream response replaced by its error_page (``proxy_intercept_errors``)."""

    level = "info"


@dataclass(frozen=True, slots=True)
class GzipRules:
    """The effective gzip_* directives of one location."""

    types: tuple[str, ...]
    min_length: int
    comp_level: int
    proxied: tuple[str, ...]
    vary: bool


@dataclass(frozen=True, slots=True)
class ResponseRules:
    """What one location's responses get; see the module docstring."""

    headers: tuple[tuple[bytes, Template, bool], ...]  # (name, value, always)
    error_pages: dict[int, ErrorPage]
    gzip: GzipRules | None
    # For answer_now: the constant fields joined (None: some value has a variable).
    fast_ok: bytes | None
    fast_always: bytes | None

    def fast_fields(self, status: int) -> bytes | None:
        return self.fast_ok if status in ADD_HEADER_STATUSES else self.fast_always

    def header_fields(self, request: Request, status: int) -> list[tuple[bytes, bytes]]:
        ok = status in ADD_HEADER_STATUSES
        fields = []
        for name, template, always in self.headers:
            if always or ok:
                value = expand(template, request)
                if value:
                    fields.append((name, value))
        return fields


def _pick(own: object, inherited: object) -> object:
    return inherited if own is None else own


def rules_for(server: Server, location: Location | None) -> ResponseRules | None:
    """The effective rules of ``location`` in ``server`` (None: nothing to do)."""
    if location is None:
        add_header, error_page = server.add_header, server.error_page
        gzip_on = False
    else:
        add_header = location.add_header if location.add_header else server.add_header
        error_page = location.error_page if location.error_page else server.error_page
        gzip_on = bool(_pick(location.gzip, server.gzip))
    gzip = None
    if gzip_on:
        assert location is not None
        gzip = GzipRules(
            types=_pick(location.gzip_types, server.gzip_types),  # type: ignore[arg-type]
            min_length=_pick(location.gzip_min_length, server.gzip_min_length),  # type: ignore[arg-type]
            comp_level=_pick(location.gzip_comp_level, server.gzip_comp_level),  # type: ignore[arg-type]
            proxied=_pick(location.gzip_proxied, server.gzip_proxied),  # type: ignore[arg-type]
            vary=bool(_pick(location.gzip_vary, server.gzip_vary)),
        )
    if not add_header and not error_page and gzip is None:
        return None
    headers = tuple(
        (item.name.encode("latin-1"), compile_template(item.value), item.always)
        for item in add_header
    )
    constant = all("$" not in item.value for item in add_header)
    fast_ok = fast_always = None
    if constant:
        fast_ok = b"".join(
            b"%s: %s\r\n" % (item.name.encode("latin-1"), item.value.encode("latin-1"))
            for item in add_header
            if item.value
        )
        fast_always = b"".join(
            b"%s: %s\r\n" % (item.name.encode("latin-1"), item.value.encode("latin-1"))
            for item in add_header
            if item.value and item.always
        )
    pages = {code: page for page in error_page for code in page.codes}
    return ResponseRules(headers, pages, gzip, fast_ok, fast_always)


class RulesCache:
    """``rules_for`` memoized per location (a location belongs to one server)."""

    __slots__ = ("_rules",)

    def __init__(self) -> None:
        self._rules: dict[int, tuple[Server, Location | None, ResponseRules | None]] = {}

    def get(self, server: Server, location: Location | None) -> ResponseRules | None:
        key = id(location) if location is not None else id(server)
        entry = self._rules.get(key)
        if entry is None or entry[0] is not server or entry[1] is not location:
            entry = (server, location, rules_for(server, location))
            self._rules[key] = entry
        return entry[2]


def error_page_for(request: Request, status: int) -> ErrorPage | None:
    """The error page of ``status`` where ``request`` is (for proxy_intercept_errors)."""
    location = request.location
    pages = location.error_page if location is not None and location.error_page else None
    for page in pages or request.server.error_page:
        if status in page.codes:
            return page
    return None


async def serve_error_page(
    pipeline: Pipeline, cycle: RequestCycle, page: ErrorPage, status: int
) -> None:
    """Answer ``status`` with ``page`` (the error was logged); see the module docstring."""
    request = cycle.request
    rules = pipeline.rules.get(request.server, request.location)
    target = page.target
    if "$" in target:
        target = expand(compile_template(target), request).decode("utf-8", "surrogateescape")
    if page.is_redirect:
        code = page.response if page.response in (301, 302, 303, 307, 308) else 302
        body = special_response_body(code, _REDIRECT_REASONS[code])
        sink = HeaderSink(cycle.response, request, rules, None)
        await sink.send_head(
            code,
            [
                (b"Location", target.encode("utf-8", "surrogateescape")),
                (b"Content-Type", b"text/html"),
                (b"Content-Length", b"%d" % len(body)),
            ],
        )
        if request.method != "HEAD":
            await sink.send(body)
        await sink.end()
        return
    if not target.startswith("@") and request.method != "HEAD":
        request.method = "GET"  # nginx: an error page is fetched with GET
    pipeline._redirect(cycle, target)
    replaced = None if page.keep_target_status else (page.response or status)
    await pipeline.serve_location(cycle, replaced)


_REDIRECT_REASONS = {
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
}


class HeaderSink(SinkFilter):
    """A ``ResponseSink`` that sends a replaced status and the add_header fields."""

    __slots__ = ("_request", "_rules", "_status")

    def __init__(
        self,
        inner: ResponseSink,
        request: Request,
        rules: ResponseRules | None,
        status: int | None,
    ) -> None:
        super().__init__(inner)
        self._request = request
        self._rules = rules
        self._status = status  # the error_page status that replaces the handler's

    async def send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> None:
        if self._status is not None and self._status != status:
            status, reason = self._status, None
        rules = self._rules
        if rules is not None and rules.headers:
            headers = [*headers, *rules.header_fields(self._request, status)]
        await self._inner.send_head(status, headers, reason)
