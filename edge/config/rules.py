"""The checks a field's type cannot express: cross-references and cross-field rules.

Theory of operation: ``edge.config.load`` structures the YAML by the schema's
types; everything a single value can get wrong is caught there.  What is left
is here, and only here: a name that must be defined elsewhere (an upstream, a
limit zone, a named location), fields that exclude or need each other, and
siblings that must not collide.  The loader calls ``check`` on every object it
builds and ``check_items`` on every list of blocks, with a best-effort object
when parts of it were invalid (a bad field is replaced by its default), so one
mistake never hides another and ``edge -t`` reports them all in one run.

A rule yields ``Issue``s whose path is relative to the object it checks,
spelled in YAML keys; ``refs`` are paths (relative the same way) that the
message names where it has ``REF`` ("duplicate location '/a' (also
servers[0].locations[0])").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.config.issues import REF, Issue, suggest
from edge.config.schema import (
    OBSERVABILITY_HANDLERS,
    EdgeConfig,
    LimitReqRule,
    Listen,
    Location,
    MatchKind,
    ProxyHandler,
    ReturnHandler,
    Server,
    StaticHandler,
    StubStatusHandler,
    Upstream,
)
from edge.tls import check_pair

REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@dataclass(frozen=True, slots=True)
class Names:
    """What the document defines and others may name, read before anything is built so a
    reference to a definition that has errors of its own is not reported as missing."""

    upstreams: frozenset[str] = frozenset()
    limit_req_zones: frozenset[str] = frozenset()
    limit_conn_zones: frozenset[str] = frozenset()

    @classmethod
    def of(cls, document: object) -> Names:
        if not isinstance(document, dict):
            return cls()

        def defined(section: str) -> frozenset[str]:
            node = document.get(section)
            if not isinstance(node, dict):
                return frozenset()
            return frozenset(name for name in node if isinstance(name, str) and name)

        return cls(
            upstreams=defined("upstreams"),
            limit_req_zones=defined("limit_req_zones"),
            limit_conn_zones=defined("limit_conn_zones"),
        )


def check(item: object, names: Names) -> Iterator[Issue]:
    """The rules about one built object (nothing for types without rules)."""
    rule = _OBJECT_RULES.get(type(item))
    if rule is not None:
        yield from rule(item, names)


def check_items(
    kind: type, items: Sequence[tuple[int, Any]], raw: Sequence[object]
) -> Iterator[Issue]:
    """The rules about siblings: ``items`` are (index in the YAML list, built object)."""
    rule = _SIBLING_RULES.get(kind)
    if rule is not None:
        yield from rule(items, raw)


def indexed(items: Sequence[Any]) -> Iterable[tuple[int, Any]]:
    """Each item with its index in the YAML list (a list with invalid entries left out
    remembers where the kept ones were)."""
    return zip(getattr(items, "indices", range(len(items))), items, strict=True)


# --- references ----------------------------------------------------------------------


def reference(section: str, name: str, names: Names) -> str | None:
    """What is wrong with ``name`` as a reference into ``section`` (schema ``Refers``)."""
    defined: frozenset[str] = getattr(names, section)
    if name in defined:
        return None
    if section == "upstreams":
        return f"no upstream named {name!r}{suggest(name, defined)}"
    return f"no zone {name!r} in {section}{suggest(name, defined)}"


def _named_locations(
    items: Sequence[tuple[int, Location]], raw: Sequence[object]
) -> Iterator[Issue]:
    """A ``try_files`` fallback ``@name`` must be a named location of the same server.  The
    names come from the YAML too, so a named location with errors still counts as there."""
    named = {location.path for _, location in items if location.match == "named"}
    named |= {
        node["path"].strip()
        for node in raw
        if isinstance(node, dict) and isinstance(node.get("path"), str)
        if node["path"].strip().startswith("@")
    }
    for index, location in items:
        for position, page in indexed(location.error_page or ()):
            if page.target.startswith("@") and page.target not in named:
                yield Issue(
                    (index, "error_page", position),
                    f"no named location {page.target!r} in this server"
                    f"{suggest(page.target, named)}",
                )
        handler = location.handler
        if isinstance(handler, StaticHandler) and handler.try_files:
            fallback = handler.try_files[-1]
            if fallback.startswith("@") and fallback not in named:
                yield Issue(
                    (index, "try_files"),
                    f"no named location {fallback!r} in this server{suggest(fallback, named)}",
                )


# --- fields that exclude or need each other --------------------------------------------


def _upstream(upstream: Upstream, names: Names) -> Iterator[Issue]:
    servers = list(indexed(upstream.servers))
    if servers and all(server.backup for _, server in servers):
        yield Issue(("servers",), "every server is a backup; at least one must not be")
    if upstream.balance == "ip_hash":
        # As nginx: ip_hash would send a client's hash bucket to the backup
        # while its primary is fine, so it refuses the pairing.
        for index, server in servers:
            if server.backup:
                yield Issue(
                    ("servers", index, "backup"), "balance ip_hash does not support backup servers"
                )


def _limit_req(rule: LimitReqRule, names: Names) -> Iterator[Issue]:
    if rule.nodelay and rule.delay:
        yield Issue(("delay",), "nodelay and delay are exclusive")


def _static(handler: StaticHandler, names: Names) -> Iterator[Issue]:
    if handler.root is not None and handler.alias is not None:
        yield Issue(("alias",), "root and alias are exclusive; use one")


_UPGRADE_PARAMS = frozenset(("upgrade", "connection"))


def _proxy(handler: ProxyHandler, names: Names) -> Iterator[Issue]:
    if handler.protocol != "uwsgi":
        return
    for param in handler.params:
        if param.name.lower() in _UPGRADE_PARAMS:
            yield Issue(
                ("params", param.name),
                "a uwsgi upstream cannot switch protocols (WebSocket): uwsgi carries one "
                "request and its response; proxy this location with protocol: http",
            )


def _server(server: Server, names: Names) -> Iterator[Issue]:
    for position, page in indexed(server.error_page):
        if page.target.startswith("@"):
            named = {loc.path for loc in server.locations if loc.match == "named"}
            if page.target not in named:
                yield Issue(
                    ("error_page", position),
                    f"no named location {page.target!r} in this server"
                    f"{suggest(page.target, named)}",
                )
    secure = [listen for listen in server.listen if listen.ssl]
    for index, listen in indexed(server.listen):
        if listen.http2 and not listen.ssl:
            yield Issue(
                ("listen", index),
                f"http2 on {listen} needs ssl: HTTP/2 is offered by ALPN in the TLS "
                "handshake (h2c, HTTP/2 in clear text, is not implemented)",
            )
    certificate, key = server.ssl_certificate, server.ssl_certificate_key
    if secure and certificate is None:
        yield Issue(
            ("ssl_certificate",), f"missing: listen {secure[0]} has ssl, which needs a certificate"
        )
    if certificate is not None and key is None:
        yield Issue(("ssl_certificate_key",), "missing: ssl_certificate needs its key")
    elif key is not None and certificate is None and not secure:
        yield Issue(("ssl_certificate",), "missing: ssl_certificate_key needs its certificate")
    if certificate is not None and key is not None and _readable(certificate, key):
        # Both files were accepted (or not checked, then they may not exist): load them
        # as OpenSSL will, so a mismatched or broken pair fails edge -t, not the start.
        problem = check_pair(certificate, key)
        if problem is not None:
            yield Issue((problem[0],), problem[1])


def _readable(*paths: str) -> bool:
    return all(os.path.isfile(path) and os.access(path, os.R_OK) for path in paths)


def _location(location: Location, names: Names) -> Iterator[Issue]:
    handler = location.handler
    if isinstance(handler, StubStatusHandler) and not handler.stub_status:
        yield Issue(("stub_status",), "false serves nothing here: remove the location")
    if isinstance(handler, OBSERVABILITY_HANDLERS) and (
        not location.access or location.access[-1].network is not None
    ):
        # Never public by accident: the reader must be named, nginx's allow/deny way.
        yield Issue(
            ("access",),
            "this location shows edge's own state: say who may read it, ending with "
            "'deny all' (like [allow 127.0.0.1, deny all]) or 'allow all' to serve everyone",
        )
    if (
        isinstance(handler, StaticHandler)
        and handler.alias is not None
        and handler.root is None
        and location.match in ("regex", "regex_icase", "named")
    ):
        yield Issue(("alias",), f"alias cannot be used in a {location.match} location; use root")


def _return(handler: ReturnHandler, names: Names) -> Iterator[Issue]:
    if handler.status in REDIRECT_STATUSES:
        if handler.location is None:
            yield Issue((), f"a {handler.status} redirect needs 'location'")
        elif handler.body is not None:
            yield Issue(("body",), "a redirect has a location, not a body")
    elif handler.location is not None:
        yield Issue(
            ("location",),
            f"only redirects ({', '.join(map(str, REDIRECT_STATUSES))}) take a location",
        )


def _edge(config: EdgeConfig, names: Names) -> Iterator[Issue]:
    from edge.accesslog import BUILT_IN_FORMATS, unknown_log_variables

    defined = {spec.name for spec in config.log_formats}
    for spec in config.log_formats:
        if spec.name in BUILT_IN_FORMATS:
            yield Issue(("log_formats", spec.name), "the name of a built-in format")
        for bad in unknown_log_variables(spec.format):
            yield Issue(("log_formats", spec.name, "format"), f"unknown log variable ${bad}")
    wanted = config.access_log.format
    if wanted not in BUILT_IN_FORMATS and wanted not in defined:
        choices = sorted({*BUILT_IN_FORMATS, *defined})
        yield Issue(
            ("access_log", "format"),
            f"no log format {wanted!r}: combined, json or one of log_formats"
            f"{suggest(wanted, choices)}",
        )


# --- siblings that must not collide ------------------------------------------------------


def _duplicate_locations(
    items: Sequence[tuple[int, Location]], raw: Sequence[object]
) -> Iterator[Issue]:
    seen: dict[tuple[MatchKind, str], int] = {}
    for index, location in items:
        match = location.match
        if match == "prefix_no_regex":
            match = "prefix"  # "/a" and "^~ /a" are the same prefix to nginx
        key = (match, location.path)
        if key in seen:
            yield Issue(
                (index, "path"),
                f"duplicate location {str(location)!r} (also {REF})",
                ((seen[key],),),
            )
        else:
            seen[key] = index


def _locations(items: Sequence[tuple[int, Location]], raw: Sequence[object]) -> Iterator[Issue]:
    yield from _duplicate_locations(items, raw)
    yield from _named_locations(items, raw)


def _servers(items: Sequence[tuple[int, Server]], raw: Sequence[object]) -> Iterator[Issue]:
    """Two defaults on one address, or one name twice on one address, are errors (nginx
    only warns about the second, then silently ignores a server: worse than failing)."""
    defaults: dict[Listen, int] = {}
    named: dict[tuple[Listen, str], int] = {}
    options: dict[Listen, tuple[Listen, int]] = {}
    for index, server in items:
        for position, listen in indexed(server.listen):
            first, where = options.setdefault(listen, (listen, index))
            if (first.ssl, first.http2) != (listen.ssl, listen.http2):
                # One address is one socket: it is TLS (or HTTP/2) for every server on it
                # or for none.  nginx ORs the options silently, which turns a plain server
                # into a TLS one; saying so is better.
                yield Issue(
                    (index, "listen", position),
                    f"{listen} is {_options(listen)} here but {_options(first)} in {REF}: "
                    "servers sharing an address must give it the same options",
                    ((where,),),
                )
            if server.default_server:
                if listen in defaults:
                    yield Issue(
                        (index, "default_server"),
                        f"{listen} already has a default server ({REF})",
                        ((defaults[listen],),),
                    )
                else:
                    defaults[listen] = index
            for name in server.server_name:
                key = (listen, name)
                if key in named and named[key] != index:
                    yield Issue(
                        (index, "server_name"),
                        f"{name!r} on {listen} is already used by {REF}",
                        ((named[key],),),
                    )
                else:
                    named[key] = index


def _options(listen: Listen) -> str:
    words = [word for word, on in (("ssl", listen.ssl), ("http2", listen.http2)) if on]
    return " ".join(words) if words else "plain HTTP"


_OBJECT_RULES: Mapping[type, Callable[[Any, Names], Iterator[Issue]]] = {
    EdgeConfig: _edge,
    Upstream: _upstream,
    Server: _server,
    Location: _location,
    StaticHandler: _static,
    ReturnHandler: _return,
    LimitReqRule: _limit_req,
    ProxyHandler: _proxy,
}
_SIBLING_RULES: Mapping[
    type, Callable[[Sequence[tuple[int, Any]], Sequence[object]], Iterator[Issue]]
] = {
    Server: _servers,
    Location: _locations,
}
