"""docs/edge.md documents every YAML key the loader accepts, every CLI flag, and the
enumerated values, variables and signals, so adding one without documenting it fails here.

The keys and values come from ``edge.config.load.yaml_vocabulary()``, which walks the
schema the loader structures the YAML by (the dataclasses from ``EdgeConfig`` down, with
the loader's YAML spellings and the flat location's handler keys): a field added to the
schema is a key the loader accepts, so it is a key this test wants documented.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from edge import cli, master
from edge.config import load
from edge.variables import KNOWN as KNOWN_VARIABLES
from edge.variables import PREFIXES as VARIABLE_PREFIXES

DOC = Path(__file__).resolve().parents[3] / "docs" / "edge.md"


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def code_spans(doc: str) -> set[str]:
    """The text of every `code span` in the document."""
    return set(re.findall(r"`([^`\n]+)`", doc))


def accepted_keys() -> dict[str, set[str]]:
    """Every key ``edge.config.load`` accepts, mapped to the fields it fills (for messages)."""
    return load.yaml_vocabulary()[0]


def test_the_extraction_sees_every_section() -> None:
    keys = accepted_keys()
    # One key from each section, including renamed fields, the flat location's handler
    # keys, the nested return and the items of keyed mappings.
    for key in (
        "worker_processes",  # EdgeConfig
        "allow_symlinks_outside",  # StaticHandler, flat in the location
        "proxy",  # ProxyHandler.upstream, renamed
        "proxy_read_timeout",  # ProxyHandler.read_timeout, renamed
        "address",  # UpstreamServer.endpoint, renamed
        "fail_timeout",  # UpstreamServer
        "rate",  # LimitReqZone.rate_milli, renamed
        "if_not_empty",  # ProxyParam, an item of the params mapping
        "max_entry_size",  # CacheSettings
        "min_uses",  # OpenFileCache
        "recursive",  # RealIp
        "nodelay",  # LimitReqRule
        "format",  # AccessLogSettings
        "level",  # ErrorLogSettings
        "return",  # the location key holding a ReturnHandler
        "body",  # ReturnHandler
    ):
        assert key in keys, key
    # Fields that are not keys: a keyed item's name, a location's parts, the config's source.
    for key in ("name", "match", "handler", "source", "rate_milli", "endpoint"):
        assert key not in keys, key


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
    values = load.yaml_vocabulary()[1]
    for value in ("round_robin", "ip_hash", "uwsgi", "http", "json", "warn", "auto", "off"):
        assert value in values, value  # the walk finds every Literal the YAML can hold
    missing = sorted(value for value in values if f"`{value}`" not in doc)
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
