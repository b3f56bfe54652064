"""docs/edge.md documents every YAML key the loader accepts, every CLI flag, and the
enumerated values, variables and signals, so adding one without documenting it fails here.

The keys come from ``edge/config/load.py`` itself, the only place YAML is validated.
Every mapping the loader accepts goes through ``_Builder.mapping(node, path, allowed)``,
which reports keys outside ``allowed`` as unknown; so the set of accepted keys is the
union of the ``allowed`` arguments of those calls.  They are either module constants
(``_SERVER_KEYS``, ``_LOCATION_KEYS`` ...), read from the imported module, or inline
tuples, read from the source with ``ast``.  A call whose ``allowed`` is anything else
fails the test, so a refactor cannot silently hide keys from it.
"""

from __future__ import annotations

import ast
import inspect
import re
import signal
from pathlib import Path

import pytest

from edge import cli, master
from edge.config import load
from edge.config.schema import KNOWN_VARIABLES, VARIABLE_PREFIXES

DOC = Path(__file__).resolve().parents[3] / "docs" / "edge.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def code_spans(doc: str) -> set[str]:
    """The text of every `code span` in the document."""
    return set(re.findall(r"`([^`\n]+)`", doc))


def _string_tuple(node: ast.expr) -> tuple[str, ...] | None:
    if isinstance(node, ast.Tuple | ast.List) and all(
        isinstance(item, ast.Constant) and isinstance(item.value, str) for item in node.elts
    ):
        return tuple(str(item.value) for item in node.elts if isinstance(item, ast.Constant))
    return None


def _method_calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == name
    ]


def _allowed_argument(call: ast.Call) -> ast.expr:
    for keyword in call.keywords:
        if keyword.arg == "allowed":
            return keyword.value
    assert len(call.args) >= 3, f"line {call.lineno}: mapping() without an allowed-keys argument"
    return call.args[2]


def accepted_keys() -> dict[str, set[str]]:
    """Every key ``edge.config.load`` accepts, mapped to where it comes from (for messages)."""
    tree = ast.parse(inspect.getsource(load))
    keys: dict[str, set[str]] = {}

    def add(names: tuple[str, ...], origin: str) -> None:
        for name in names:
            keys.setdefault(name, set()).add(origin)

    # The module's key-set constants (_TOP_KEYS, _LOCATION_KEYS = ... + ..., ...).
    for name, value in vars(load).items():
        if re.fullmatch(r"_[A-Z0-9_]*KEYS", name):
            assert isinstance(value, tuple) and all(isinstance(v, str) for v in value), name
            add(value, name)

    # The allowed keys of every mapping the builder validates.
    calls = _method_calls(tree, "mapping")
    assert calls, "no _Builder.mapping() calls found: update this test to the loader's structure"
    for call in calls:
        if isinstance(call.func, ast.Attribute) and not (
            isinstance(call.func.value, ast.Name) and call.func.value.id == "self"
        ):
            continue  # some other object's .mapping(), not the builder's
        argument = _allowed_argument(call)
        literal = _string_tuple(argument)
        if literal is not None:
            add(literal, f"load.py line {call.lineno}")
        elif isinstance(argument, ast.Name):
            value = getattr(load, argument.id)
            assert isinstance(value, tuple), f"{argument.id} is not a tuple of keys"
            add(value, argument.id)
        else:
            pytest.fail(
                f"load.py line {call.lineno}: cannot read the allowed keys of "
                f"{ast.unparse(argument)!r}; make it a tuple literal or a module constant"
            )

    # Every key read with self.field(spec, "key", ...) must be one the mapping allows.
    for call in _method_calls(tree, "field"):
        if len(call.args) >= 2 and isinstance(call.args[1], ast.Constant):
            key = call.args[1].value
            assert key in keys, f"load.py line {call.lineno}: field {key!r} is read but not allowed"
    return keys


def test_the_extraction_sees_every_section() -> None:
    keys = accepted_keys()
    # One key from each kind of source: constants, a concatenated constant, inline tuples.
    for key in (
        "worker_processes",  # _TOP_KEYS
        "allow_symlinks_outside",  # _STATIC_KEYS, via _LOCATION_KEYS
        "fail_timeout",  # _UPSTREAM_SERVER_KEYS
        "if_not_empty",  # params: inline
        "max_entry_size",  # cache: inline
        "min_uses",  # open_file_cache: inline
        "recursive",  # real_ip: inline
        "nodelay",  # limit_req: inline
        "format",  # access_log: inline
        "level",  # error_log: inline
        "body",  # return: inline
    ):
        assert key in keys, key


def test_every_yaml_key_is_documented(doc: str) -> None:
    missing = {
        key: sorted(origins) for key, origins in accepted_keys().items() if f"`{key}`" not in doc
    }
    assert not missing, f"docs/edge.md does not document these keys (as `key`): {missing}"


def test_every_cli_flag_is_documented(code_spans: set[str]) -> None:
    words = {word.split("=")[0] for span in code_spans for word in span.replace(",", " ").split()}
    flags = [option for action in cli.build_parser()._actions for option in action.option_strings]
    assert "--proxy" in flags and "-t" in flags
    missing = [flag for flag in flags if flag not in words]
    assert not missing, f"docs/edge.md does not document these flags: {missing}"


def test_every_enumerated_value_is_documented(doc: str) -> None:
    values = [*load._NEXT_UPSTREAM_VALUES, *load._LOG_LEVELS]
    values += ["round_robin", "least_conn", "ip_hash", "uwsgi", "http", "combined", "json"]
    missing = [value for value in values if f"`{value}`" not in doc]
    assert not missing, f"docs/edge.md does not mention these values (as `value`): {missing}"


def test_every_variable_is_documented(doc: str) -> None:
    missing = [f"${name}" for name in sorted(KNOWN_VARIABLES) if f"`${name}`" not in doc]
    # The open families are documented as `$http_NAME`, `$cookie_NAME`, `$arg_NAME`.
    missing += [f"${prefix}NAME" for prefix in VARIABLE_PREFIXES if f"`${prefix}" not in doc]
    assert not missing, f"docs/edge.md does not document these variables: {missing}"


def test_every_handled_signal_is_documented(doc: str) -> None:
    handled = [s for s in master._HANDLED if s != signal.SIGCHLD]
    missing = [s.name for s in handled if f"`{s.name}`" not in doc]
    assert not missing, f"docs/edge.md does not document these signals: {missing}"
