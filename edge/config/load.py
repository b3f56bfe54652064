"""YAML (or quick-mode flags) -> ``EdgeConfig``: the only place that validates.

Theory of operation: the schema's frozen dataclasses are the description of
the YAML.  cattrs structures the document by their type annotations, with
``forbid_extra_keys`` (an unknown key is an error, with a "did you mean") and
detailed validation (every failing field is collected, not just the first).
What this module adds is how nginx users write things:

* one hook per type, never per field: the ``Annotated`` markers of the schema
  (``Unit``: ``1m``, ``60s``, ``off``; ``Range``; ``Text``; ``Directory`` ...),
  the scalar classes (``listen: 8080``, ``host:port``, ``deny all``) and the
  ``Syntax`` grammars, all in ``edge.config.syntax``;
* ``_SPELLINGS``: a field's YAML key where it differs from its name
  (``proxy_read_timeout`` is ``ProxyHandler.read_timeout``), one-value
  shorthands (a bare string for an upstream server, ``return: 403``) and hints
  for missing keys;
* the location, which is flat in YAML: ``root``/``alias``, ``proxy`` or
  ``return`` choose the handler class, whose keys sit beside the location's.

A structuring function never stops at a bad value: it raises ``Invalid`` with
every issue below it (paths relative to its node, in YAML keys) and a value
built again with defaults in place of the bad parts, so the cross-reference
and cross-field rules (``edge.config.rules``, the one place they live) still
see the rest.  The issues are then sorted into document order and raised as
one ``ConfigErrors``: ``edge -t`` prints a ``path: message`` line per mistake.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from contextvars import ContextVar
from typing import (
    Annotated,
    Any,
    Literal,
    NamedTuple,
    TypeVar,
    Union,
    get_args,
    get_origin,
    get_type_hints,
)

import cattrs
import yaml
from cattrs.errors import AttributeValidationNote, ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, override

from edge.config import rules, syntax
from edge.config.issues import (
    NOTHING,
    ConfigErrors,
    ConfigIssue,
    Invalid,
    Issue,
    Path,
    issues_of,
    suggest,
)
from edge.config.rules import Names
from edge.config.schema import (
    AccessLogSettings,
    AccessRule,
    AddHeader,
    Directory,
    EdgeConfig,
    Endpoint,
    ErrorLogSettings,
    ErrorPage,
    Expires,
    File,
    HeaderBuffers,
    IPNetwork,
    Keyed,
    LimitConnRule,
    LimitConnZone,
    LimitReqZone,
    Listen,
    Location,
    LogFormatSpec,
    LogTarget,
    MetricsHandler,
    NonEmpty,
    Protocol,
    ProxyHandler,
    ProxyParam,
    Range,
    Refers,
    Refused,
    ReturnHandler,
    Server,
    StaticHandler,
    StatusPageHandler,
    StubStatusHandler,
    Syntax,
    Template,
    Text,
    Unit,
    Upstream,
    UpstreamServer,
)
from edge.config.syntax import (
    parse_duration,
    parse_endpoint,
    parse_listen,
    parse_rate,
    parse_size,
    unknown_variables,
)

__all__ = [
    "QUICK_UPSTREAM",
    "ConfigErrors",
    "ConfigIssue",
    "build_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_endpoint",
    "parse_listen",
    "parse_rate",
    "parse_size",
    "quick_config",
    "unknown_variables",
    "yaml_vocabulary",
]


# --- YAML spelling: where the YAML is not the schema's field names ------------------------


class _Shorthand(NamedTuple):
    """A value that ``accepts`` where a mapping is expected means this one key (nginx's
    one-argument form); ``at_node``: its errors name the node itself, not the key."""

    key: str
    accepts: Callable[[object], bool]
    at_node: bool = False


class _Spelling(NamedTuple):
    keys: Mapping[str, str] = {}  # field -> YAML key
    omit: tuple[str, ...] = ()  # fields never read from YAML
    shorthand: _Shorthand | None = None
    hints: Mapping[str, str] = {}  # YAML key -> appended to "missing required key"
    missing: Mapping[str, str] = {}  # YAML key -> the message when missing, at the key


_SPELLINGS: Mapping[type, _Spelling] = {
    EdgeConfig: _Spelling(omit=("source",), missing={"servers": "at least one server is required"}),
    # access_log: off / access_log: /var/log/edge/access.log
    AccessLogSettings: _Spelling(
        shorthand=_Shorthand("path", lambda n: n is None or n is False or isinstance(n, str))
    ),
    ErrorLogSettings: _Spelling(shorthand=_Shorthand("path", lambda n: isinstance(n, str))),
    LimitReqZone: _Spelling(keys={"rate_milli": "rate"}, hints={"rate": " (like 10r/s)"}),
    UpstreamServer: _Spelling(
        keys={"endpoint": "address"},
        shorthand=_Shorthand("address", lambda n: isinstance(n, str)),
        hints={"address": " (host:port or unix:/path)"},
    ),
    ProxyHandler: _Spelling(
        keys={
            "upstream": "proxy",
            "connect_timeout": "proxy_connect_timeout",
            "send_timeout": "proxy_send_timeout",
            "read_timeout": "proxy_read_timeout",
            "intercept_errors": "proxy_intercept_errors",
        }
    ),
    # NAME: $value, or NAME: {value: $value, if_not_empty: true}
    ProxyParam: _Spelling(shorthand=_Shorthand("value", lambda n: True, at_node=True)),
    # NAME: value, or NAME: {value: value, always: true}
    AddHeader: _Spelling(shorthand=_Shorthand("value", lambda n: True, at_node=True)),
    ReturnHandler: _Spelling(shorthand=_Shorthand("status", syntax.is_int)),
    LimitConnRule: _Spelling(hints={"max": " (connections per client)"}),
    MetricsHandler: _Spelling(keys={"format": "metrics"}),
    StatusPageHandler: _Spelling(keys={"format": "status_page", "json_url": "status_json_url"}),
    # log_formats: {NAME: '$remote_addr ...'} or {NAME: {format: ..., escape: json}}
    LogFormatSpec: _Spelling(shorthand=_Shorthand("format", lambda n: isinstance(n, str))),
}

# Lists of blocks: one mapping there is a mistake, not a list of one.
_BLOCK_LISTS: Mapping[type, str] = {Server: "servers", Location: "locations"}

# The location's handler: its name in messages, its class, the keys that choose it, and
# the key holding its own keys (None: they sit beside the location's).
_HANDLERS: tuple[tuple[str, type, tuple[str, ...], str | None], ...] = (
    ("static", StaticHandler, ("root", "alias"), None),
    ("proxy", ProxyHandler, ("proxy",), None),
    ("return", ReturnHandler, ("return",), "return"),
    ("stub_status", StubStatusHandler, ("stub_status",), None),
    ("metrics", MetricsHandler, ("metrics",), None),
    ("status_page", StatusPageHandler, ("status_page",), None),
)
_LOCATION_PARTS = ("match", "handler")  # Location fields with no YAML key of their own

# Classes written as one YAML scalar, each parsed by its own hook.
_SCALAR_HOOKS: Mapping[type, Callable[[Any], Any]] = {
    bool: syntax.boolean,
    int: syntax.integer,
    float: syntax.number,
    str: syntax.string,
    Endpoint: parse_endpoint,
    Listen: parse_listen,
    Expires: syntax.expires,
    HeaderBuffers: syntax.header_buffers,
    AccessRule: syntax.access_rule,
    ErrorPage: syntax.error_page,
}
_SYNTAXES: Mapping[str, Callable[[Any], Any]] = {
    "index": syntax.index,
    "try_files": syntax.try_files,
    "next_upstream": syntax.next_upstream,
    "cache_valid": syntax.cache_valid,
    "server_name": syntax.server_name,
    "worker_processes": syntax.worker_processes,
    "gzip_types": syntax.gzip_types,
    "gzip_proxied": syntax.gzip_proxied,
}


def _yaml_keys(cls: type) -> dict[str, str]:
    """Field name -> YAML key, for every field of ``cls`` read from YAML."""
    spelling = _SPELLINGS.get(cls, _Spelling())
    return {
        f.name: spelling.keys.get(f.name, f.name)
        for f in dataclasses.fields(cls)
        if f.name not in spelling.omit
    }


# --- the markers of the schema (Annotated[T, marker]) -------------------------------------


class _Context(NamedTuple):
    base_dir: str
    check_paths: bool
    names: Names


_CONTEXT: ContextVar[_Context] = ContextVar("edge_config_load")

_UNITS: Mapping[str, Callable[[object], float]] = {
    "size": parse_size,
    "duration": parse_duration,
    "rate": parse_rate,
}


def _unit(mark: Unit, value: object) -> float:
    if mark.off is not None and (value is False or value == "off"):
        return mark.off
    return _UNITS[mark.kind](value)


def _text(mark: Text, value: object) -> str:
    if isinstance(value, str) and value:
        if mark.pattern is None or re.fullmatch(mark.pattern, value):
            return value
    got = syntax.kind(value) if value is None or isinstance(value, list | dict) else repr(value)
    raise ValueError(mark.message or f"expected {mark.expected}, got {got}")


def _template(mark: Template, value: object) -> str:
    if mark.numbers and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        expected = "a string value" if mark.numbers else "a string"
        raise ValueError(f"expected {expected}, got {syntax.kind(value)}")
    if bad := unknown_variables(value):
        raise ValueError(f"unknown variable ${bad[0]}")
    return value


def _directory(mark: Directory, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a directory path, got {syntax.kind(value)}")
    context = _CONTEXT.get()
    return syntax.directory(
        value, context.base_dir, check_paths=context.check_paths, keep_slash=mark.keep_slash
    )


def _file(mark: File, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a file path, got {syntax.kind(value)}")
    context = _CONTEXT.get()
    try:
        return syntax.file(value, context.base_dir, check_paths=context.check_paths)
    except ValueError as exc:
        # The path is still what was asked for: rules see it set, not missing.
        path = syntax.file(value, context.base_dir, check_paths=False)
        raise Invalid([Issue((), str(exc))], path) from None


def _log_target(mark: LogTarget, value: object) -> str | None:
    if mark.off and (value is None or value is False or value == "off"):
        return None
    if isinstance(value, str) and value:
        if value in ("stdout", "stderr"):
            return value
        return os.path.normpath(os.path.join(_CONTEXT.get().base_dir, os.path.expanduser(value)))
    expected = "a file path, stdout, stderr or off" if mark.off else "a file path or stderr"
    raise ValueError(f"expected {expected}, got {syntax.kind(value)}")


def _range(mark: Range, value: int) -> None:
    if value < mark.low:
        raise ValueError(f"must be at least {mark.low}, got {value}")
    if mark.high is not None and value > mark.high:
        raise ValueError(f"must be at most {mark.high}, got {value}")


def _non_empty(mark: NonEmpty, value: tuple[object, ...]) -> None:
    if not value:
        raise ValueError(mark.message)


def _refused(mark: Refused, value: bool) -> None:
    if value:
        raise ValueError(mark.message)


def _refers(mark: Refers, value: str) -> None:
    problem = rules.reference(mark.section, value, _CONTEXT.get().names)
    if problem is not None:
        raise ValueError(problem)


# A marker either parses the value (replacing the base type's hook) or checks the result.
_PARSERS: Mapping[type, Callable[[Any, object], Any]] = {
    Unit: _unit,
    Text: _text,
    Template: _template,
    Directory: _directory,
    File: _file,
    LogTarget: _log_target,
}
_CHECKS: Mapping[type, Callable[[Any, Any], None]] = {
    Range: _range,
    NonEmpty: _non_empty,
    Refused: _refused,
    Refers: _refers,
}


# --- structuring ------------------------------------------------------------------------

Hook = Callable[[Any], Any]
T = TypeVar("T")


class _Built:
    """A value already structured, handed back to structuring (the retry with defaults, a
    location's parts); ``NOTHING`` inside: it failed, and that was reported."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


class _Partial(tuple):  # type: ignore[type-arg]
    """A best-effort list with its invalid entries left out; ``indices`` are where the kept
    ones are in the YAML list, so a rule names the right entry (``rules.indexed``)."""

    indices: tuple[int, ...] = ()


def _attempt(hook: Hook, node: object, where: Path, issues: list[Issue]) -> Any:
    """``hook(node)``, or its issues added under ``where`` and its salvaged value."""
    try:
        return hook(node)
    except ValueError as exc:
        issues.extend(issues_of(exc, where))
        return exc.salvaged if isinstance(exc, Invalid) else NOTHING


def _cattrs_hook(hook: Hook) -> Callable[[Any, Any], Any]:
    """``hook`` as cattrs calls it, ``(value, type)``, also taking a ``_Built`` value."""

    def structure(node: Any, _type: Any) -> Any:
        if type(node) is _Built:
            if node.value is NOTHING:
                raise Invalid([])
            return node.value
        return hook(node)

    return structure


def _unwritable(node: object) -> Any:
    raise ValueError(f"cannot be written as {syntax.kind(node)}")


def _is_dataclass(tp: object) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_union(tp: object) -> bool:
    return get_origin(tp) in (types.UnionType, Union)


def _literal(tp: Any) -> Hook:
    choices: tuple[str, ...] = get_args(tp)

    def structure(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        hint = suggest(value, choices) if isinstance(value, str) else ""
        raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}{hint}")

    return structure


class _Structurer:
    """cattrs with edge's hooks, built once; what differs per load is in ``_CONTEXT``."""

    def __init__(self) -> None:
        self.converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
        self._named: dict[type, Callable[..., Any]] = {}  # Keyed entries: (node, name=)
        for tp, hook in {**_SCALAR_HOOKS, Location: self._location}.items():
            self.converter.register_structure_hook(tp, _cattrs_hook(hook))
        factories: tuple[tuple[Callable[[Any], bool], Callable[[Any], Hook]], ...] = (
            (_is_dataclass, self._dataclass),
            (lambda tp: get_origin(tp) is tuple, self._tuple),
            (_is_union, self._union),
            (lambda tp: get_origin(tp) is Literal, _literal),
            (lambda tp: get_origin(tp) is Annotated, self._annotated),
        )
        for predicate, factory in factories:
            self.converter.register_structure_hook_factory(
                predicate, lambda tp, make=factory: _cattrs_hook(make(tp))
            )
        # A location's path, match and handler arrive built (see _location).
        keys = {f.name: f.name for f in dataclasses.fields(Location)}
        built = dict.fromkeys(("path", *_LOCATION_PARTS), _unwritable)
        self._location_fields = self._generate(Location, keys, built)

    def hook(self, tp: Any) -> Hook:
        """The structuring function for ``tp`` (cattrs caches it)."""
        hook = self.converter.get_structure_hook(tp)
        return lambda node: hook(node, tp)

    def _annotated(self, tp: Any) -> Hook:
        base, *marks = get_args(tp)
        parse: Hook | None = None
        checks: list[Hook] = []
        for mark in marks:
            if isinstance(mark, Keyed):
                parse = self._keyed(base, mark)
            elif isinstance(mark, Syntax):
                parse = _SYNTAXES[mark.name]
            elif type(mark) in _PARSERS:
                parse = functools.partial(_PARSERS[type(mark)], mark)
            elif type(mark) in _CHECKS:
                checks.append(functools.partial(_CHECKS[type(mark)], mark))
        hook = parse if parse is not None else self.hook(base)

        def structure(node: object) -> object:
            value = hook(node)
            for check in checks:
                check(value)
            return value

        return structure if checks else hook

    def _union(self, tp: Any) -> Hook:
        members = get_args(tp)
        if set(members) == set(get_args(IPNetwork)):
            return syntax.network
        if len(members) != 2 or type(None) not in members:
            return _unwritable  # a union of classes (Location.handler): its holder chooses
        inner_type = next(member for member in members if member is not type(None))
        inner = self.hook(inner_type)
        # A feature block is turned off nginx's way, or asked for with its defaults.
        feature = inner_type if _is_dataclass(inner_type) else None
        defaults = feature is not None and all(
            f.default is not dataclasses.MISSING for f in dataclasses.fields(feature)
        )

        def structure(node: object) -> object:
            if node is None:
                return None
            if feature is not None and (node is False or node == "off"):
                return None
            if feature is not None and node is True and defaults:
                return feature()
            return inner(node)

        return structure

    def _tuple(self, tp: Any) -> Hook:
        item_type, *rest = get_args(tp)
        if rest != [Ellipsis]:
            return _unwritable
        item = self.hook(item_type)
        noun = _BLOCK_LISTS.get(item_type)
        blocks = _is_dataclass(item_type) and item_type not in _SCALAR_HOOKS

        def structure(node: object) -> tuple[Any, ...]:
            if node is None:
                return ()
            if isinstance(node, list):
                entries: list[tuple[tuple[int, ...], object]] = [
                    ((i,), x) for i, x in enumerate(node)
                ]
            elif noun is not None:
                raise ValueError(f"expected a list of {noun}, got {syntax.kind(node)}")
            else:
                entries = [((), node)]  # a list of one, as nginx lets a directive repeat
            issues: list[Issue] = []
            kept: list[tuple[int, Any]] = []
            for where, entry in entries:
                if entry is None and blocks:
                    issues.append(Issue(where, "expected a mapping, got nothing"))
                    continue
                value = _attempt(item, entry, where, issues)
                if value is not NOTHING:
                    kept.append((where[0] if where else 0, value))
            issues.extend(rules.check_items(item_type, kept, [entry for _, entry in entries]))
            if not issues:
                return tuple(value for _, value in kept)
            partial = _Partial(value for _, value in kept)
            partial.indices = tuple(index for index, _ in kept)
            raise Invalid(issues, partial)

        return structure

    def _keyed(self, tp: Any, mark: Keyed) -> Hook:
        item_type = get_args(tp)[0]
        self.hook(item_type)  # makes the class's structurer, which registers its named form
        named = self._named[item_type]

        def structure(node: object) -> tuple[Any, ...]:
            if node is None:
                return ()
            if not isinstance(node, dict):
                raise ValueError(f"expected a mapping of {mark.expected}, got {syntax.kind(node)}")
            issues: list[Issue] = []
            kept = []
            for name, spec in node.items():
                if not isinstance(name, str) or not name:
                    issues.append(Issue((), f"names must be non-empty strings, got {name!r}"))
                    continue
                value = _attempt(functools.partial(named, name=name), spec, (name,), issues)
                if value is not NOTHING:
                    kept.append(value)
            if issues:
                raise Invalid(issues, tuple(kept))
            return tuple(kept)

        return structure

    # -- classes -------------------------------------------------------------------------

    def _generate(
        self, cls: type, keys: Mapping[str, str], hooks: Mapping[str, Hook] = {}
    ) -> Callable[[Any, Any], Any]:
        """cattrs' structuring function for ``cls``, each field with the hook of its full
        annotation (cattrs itself would drop the ``Annotated`` markers)."""
        hints = get_type_hints(cls, include_extras=True)
        overrides: dict[str, Any] = {f.name: override(omit=True) for f in dataclasses.fields(cls)}
        for name, key in keys.items():
            hook = _cattrs_hook(hooks[name]) if name in hooks else None
            hook = hook or self.converter.get_structure_hook(hints[name])
            overrides[name] = override(rename=key, struct_hook=hook)
        return make_dict_structure_fn(cls, self.converter, **overrides)

    def _dataclass(self, cls: type) -> Hook:
        spelling = _SPELLINGS.get(cls, _Spelling())
        keys = _yaml_keys(cls)
        generated = self._generate(cls, keys)
        shorthand = spelling.shorthand
        # An empty YAML value means the defaults, where there is one for every key.
        empty_ok = all(
            f.default is not dataclasses.MISSING or f.name == "name"
            for f in dataclasses.fields(cls)
            if f.name in keys
        )

        def structure(node: object, name: str | None = None) -> Any:
            at_node = set()
            if shorthand is not None and not isinstance(node, dict) and shorthand.accepts(node):
                node = {shorthand.key: node}
                if shorthand.at_node:
                    at_node.add(shorthand.key)
            if node is None and empty_ok:
                node = {}
            if not isinstance(node, dict):
                raise ValueError(f"expected a mapping, got {syntax.kind(node)}")
            issues = [
                Issue((), f"keys must be strings, got {k!r}") for k in node if type(k) is not str
            ]
            node = {k: v for k, v in node.items() if type(k) is str}
            if name is not None:  # an entry of a Keyed mapping: its key is its name
                if "name" in node:
                    issues.append(Issue(("name",), "unknown key"))
                node = {**node, "name": name}
                at_node.add("name")
            return self._build(cls, generated, node, keys, spelling, issues, at_node)

        self._named[cls] = structure
        return structure

    def _build(
        self,
        cls: type,
        generated: Callable[[Any, Any], Any],
        node: dict[Any, Any],
        keys: Mapping[str, str],
        spelling: _Spelling,
        issues: list[Issue],
        at_node: Collection[str] = (),
    ) -> Any:
        """``generated(node)``, its errors as issues, then the rules on what was built."""
        try:
            built = generated(node, cls)
        except ClassValidationError as exc:
            failed = self._failures(exc, node, keys, spelling, issues, at_node)
            # Again with defaults for what failed, so the rules still see the rest.
            allowed = set(keys.values())
            retry = {k: v for k, v in node.items() if k in allowed and k not in failed}
            retry.update({k: _Built(v) for k, v in failed.items() if v is not NOTHING})
            try:
                built = generated(retry, cls)
            except ClassValidationError:
                built = NOTHING
        if built is not NOTHING:
            issues.extend(rules.check(built, _CONTEXT.get().names))
        if issues:
            raise Invalid(issues, built)
        return built

    @staticmethod
    def _failures(
        exc: ClassValidationError,
        node: Mapping[Any, Any],
        keys: Mapping[str, str],
        spelling: _Spelling,
        issues: list[Issue],
        at_node: Collection[str],
    ) -> dict[str, object]:
        """cattrs' per-field errors as issues; returns YAML key -> salvaged value."""
        failed: dict[str, object] = {}
        known = [key for key in keys.values() if key != "name" or "name" not in at_node]
        for error in exc.exceptions:
            notes = getattr(error, "__notes__", ())
            note = next((n for n in notes if isinstance(n, AttributeValidationNote)), None)
            if note is None and isinstance(error, ForbiddenExtraKeysError):
                issues.extend(
                    Issue((key,), f"unknown key{suggest(key, known)}")
                    for key in node  # in document order
                    if key in error.extra_fields
                )
            elif note is not None and isinstance(error, KeyError) and keys[note.name] not in node:
                key = keys[note.name]
                if key in spelling.missing:
                    issues.append(Issue((key,), spelling.missing[key]))
                else:
                    hint = spelling.hints.get(key, "")
                    issues.append(Issue((), f"missing required key {key!r}{hint}"))
            elif note is not None and isinstance(error, ValueError):
                key = keys[note.name]
                issues.extend(issues_of(error, () if key in at_node else (key,)))
                failed[key] = error.salvaged if isinstance(error, Invalid) else NOTHING
            else:
                raise error  # not a validation error: a bug, shown as one
        return failed

    # -- the location: flat in YAML ------------------------------------------------------

    def _location(self, node: object) -> Location:
        if not isinstance(node, dict):
            raise ValueError(f"expected a mapping, got {syntax.kind(node)}")
        own = [key for key in _yaml_keys(Location) if key not in _LOCATION_PARTS]
        groups = [
            (name, cls, selectors, nested, (nested,) if nested else tuple(_yaml_keys(cls).values()))
            for name, cls, selectors, nested in _HANDLERS
        ]
        allowed = own + [key for *_, keys in groups for key in keys]
        issues = []
        for key in node:
            if not isinstance(key, str):
                issues.append(Issue((), f"keys must be strings, got {key!r}"))
            elif key not in allowed:
                issues.append(Issue((key,), f"unknown key{suggest(key, allowed)}"))
        if "path" in node:
            matched = _attempt(syntax.location_path, node["path"], ("path",), issues)
        else:
            message = "missing: every location needs a path like /static/ or '= /favicon.ico'"
            issues.append(Issue(("path",), message))
            matched = NOTHING
        present = [group for group in groups if any(key in node for key in group[2])]
        handler = NOTHING
        if not present:
            message = (
                "a location needs one handler: root or alias (static files), "
                "proxy (an upstream), return (a fixed response), "
                "or stub_status, metrics or status_page (edge's own state)"
            )
            issues.append(Issue((), message))
        elif len(present) > 1:
            chosen = ", ".join(group[0] for group in present)
            issues.append(Issue((), f"a location has exactly one handler, this one has {chosen}"))
        else:
            handler_name, handler_type, _, nested, handler_keys = present[0]
            issues.extend(
                Issue((key,), f"does not apply to a {handler_name} location")
                for *_, keys in groups
                for key in keys
                if key in node and key not in handler_keys
            )
            # Built even when the path is bad, so that its errors are reported too.
            spec = node[nested] if nested else {k: node[k] for k in handler_keys if k in node}
            handler = _attempt(self.hook(handler_type), spec, (nested,) if nested else (), issues)
        parts: dict[str, object] = {k: node[k] for k in own if k in node}
        parts["path"] = _Built(NOTHING if matched is NOTHING else matched[1])
        parts["match"] = _Built(NOTHING if matched is NOTHING else matched[0])
        parts["handler"] = _Built(handler)
        keys = {f.name: f.name for f in dataclasses.fields(Location)}
        location: Location = self._build(
            Location, self._location_fields, parts, keys, _Spelling(), issues
        )
        return location


_STRUCTURER = _Structurer()


# --- YAML ------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no stubs
    """SafeLoader that refuses duplicate keys, which PyYAML would silently let the last win."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict):
            continue  # unhashable: PyYAML refuses it itself
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


# --- public entry points -----------------------------------------------------------------


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
    config = _structure({} if data is None else data, EdgeConfig, base_dir, check_paths)
    return dataclasses.replace(config, source=source)


def _structure(data: object, cls: type[T], base_dir: str | None, check_paths: bool) -> T:
    """``data`` as a ``cls``, or ``ConfigErrors`` with every issue, in document order."""
    token = _CONTEXT.set(_Context(base_dir or os.getcwd(), check_paths, Names.of(data)))
    try:
        built: T = _STRUCTURER.hook(cls)(data)
    except ValueError as exc:
        issues = sorted(issues_of(exc), key=lambda issue: _position(data, issue.path))
        raise ConfigErrors(issue.public() for issue in issues) from None
    finally:
        _CONTEXT.reset(token)
    return built


def _position(document: object, path: Path) -> tuple[int, ...]:
    """Where ``path`` is in the document, to report issues in the order of the file: the
    index of each key or entry on the way (-1 for a key that is not there)."""
    node, position = document, []
    for segment in path:
        if isinstance(node, dict):
            keys = list(node)
            index = next((i for i, k in enumerate(keys) if k == segment or str(k) == segment), -1)
            position.append(index)
            if index < 0:
                break
            node = node[keys[index]]
        elif isinstance(node, list) and isinstance(segment, int) and segment < len(node):
            position.append(segment)
            node = node[segment]
        else:
            break  # inside a shorthand
    return tuple(position)


def yaml_vocabulary() -> tuple[dict[str, set[str]], set[str]]:
    """Every YAML key the loader accepts (with the ``Class.field`` it fills) and every
    enumerated value, walked from ``EdgeConfig``; the docs are checked against these."""
    keys: dict[str, set[str]] = {}
    values: set[str] = set(syntax.NEXT_UPSTREAM_VALUES)
    seen: set[object] = set()

    def walk(tp: Any) -> None:
        if tp in seen:
            return
        seen.add(tp)
        if get_origin(tp) is Literal:
            values.update(map(str, get_args(tp)))
        elif get_origin(tp) in (Annotated, tuple) or _is_union(tp):
            for arg in get_args(tp):
                walk(arg)
        elif _is_dataclass(tp) and tp not in _SCALAR_HOOKS:
            hints = get_type_hints(tp, include_extras=True)
            skip = _LOCATION_PARTS if tp is Location else ("name",) if tp in _KEYED else ()
            for name, key in _yaml_keys(tp).items():
                if name not in skip:
                    keys.setdefault(key, set()).add(f"{tp.__name__}.{name}")
                    walk(hints[name])
            if tp is Location:
                for _, handler, _, nested in _HANDLERS:
                    if nested:
                        keys.setdefault(nested, set()).add(f"Location.handler ({nested})")
                    walk(handler)

    walk(EdgeConfig)
    return keys, values


_KEYED = (
    Upstream,
    LimitReqZone,
    LimitConnZone,
    ProxyParam,
    AddHeader,
    LogFormatSpec,
)  # named by their YAML key


# --- quick mode ---------------------------------------------------------------------------


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
    issues: list[ConfigIssue] = []

    def directory(text: str, flag: str, keep_slash: bool = False) -> str | None:
        try:
            return syntax.directory(
                text, os.getcwd(), check_paths=check_paths, keep_slash=keep_slash
            )
        except ValueError as exc:
            issues.append(ConfigIssue(flag, str(exc)))
            return None

    try:
        listen_at = parse_listen(listen)
    except ValueError as exc:
        issues.append(ConfigIssue("--listen", str(exc)))
        listen_at = Listen(host="127.0.0.1", port=8080)

    locations: list[Location] = []
    prefixes: dict[str, str] = {}
    for i, item in enumerate(statics):
        flag = f"--static[{i}]" if len(statics) > 1 else "--static"
        prefix, sep, target = item.partition("=")
        if not sep or not prefix.startswith("/") or not target:
            message = f"expected PREFIX=DIR like /static=./static, got {item!r}"
            issues.append(ConfigIssue(flag, message))
            continue
        # "/static" and "/static/" mean the same mount; a trailing slash on both
        # sides keeps alias from matching "/staticfoo" or escaping via "/static..".
        prefix = prefix.rstrip("/") + "/"
        if prefix in prefixes:
            issues.append(ConfigIssue(flag, f"{prefix} is already served by {prefixes[prefix]}"))
            continue
        prefixes[prefix] = flag
        alias = directory(target.rstrip("/") + "/", flag, keep_slash=True)
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
        message = "--root and --proxy both serve '/'; serve files with --static PREFIX=DIR"
        issues.append(ConfigIssue("--root", message))
    elif root is not None:
        if "/" in prefixes:
            issues.append(ConfigIssue("--root", f"'/' is already served by {prefixes['/']}"))
        root_dir = directory(root, "--root")
        if root_dir is not None:
            handler = StaticHandler(root=root_dir.rstrip("/") or "/")
            locations.append(Location(path="/", match="prefix", handler=handler))
    elif proxies:
        protocols = set()
        servers = []
        for i, url in enumerate(proxies):
            flag = f"--proxy[{i}]" if len(proxies) > 1 else "--proxy"
            scheme, sep, address = url.partition("://")
            if not sep or scheme not in ("uwsgi", "http"):
                message = f"expected uwsgi://HOST:PORT or http://HOST:PORT, got {url!r}"
                issues.append(ConfigIssue(flag, message))
                continue
            try:
                endpoint = parse_endpoint(address.rstrip("/"))
            except ValueError as exc:
                issues.append(ConfigIssue(flag, str(exc)))
                continue
            protocols.add(scheme)
            servers.append(UpstreamServer(endpoint=endpoint))
        if len(protocols) > 1:
            message = "all backends must use the same protocol (uwsgi:// or http://)"
            issues.append(ConfigIssue("--proxy", message))
        if servers:
            upstreams = (Upstream(name=QUICK_UPSTREAM, servers=tuple(servers)),)
            protocol: Protocol = "http" if protocols == {"http"} else "uwsgi"
            if "/" in prefixes:
                issues.append(ConfigIssue("--proxy", f"'/' is already served by {prefixes['/']}"))
            proxy = ProxyHandler(upstream=QUICK_UPSTREAM, protocol=protocol)
            locations.append(Location(path="/", match="prefix", handler=proxy))
    elif not statics:
        message = "nothing to serve: give --proxy URL, --root DIR or --static PREFIX=DIR"
        issues.append(ConfigIssue("", message))

    if issues:
        raise ConfigErrors(issues)
    server = Server(listen=(listen_at,), locations=tuple(locations))
    return EdgeConfig(servers=(server,), upstreams=upstreams)
