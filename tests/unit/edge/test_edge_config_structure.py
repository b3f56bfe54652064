"""edge.config.load is driven by the schema's types: a directive is a typed field.

The first tests structure a made-up block that no loader code knows about, the
way a new directive (``ssl_certificate``, ``gzip_comp_level`` ...) would be added:
only its annotations say what the YAML may hold.  The last ones check that every
field of the real schema is reachable from YAML, or deliberately is not.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pytest

from edge.config import load, schema
from edge.config.issues import ConfigErrors
from edge.config.schema import Bytes, EdgeConfig, Positive, Range, Seconds, Text


@dataclass(frozen=True, slots=True)
class Compression:
    level: Annotated[int, Range(1, 9)] = 1
    min_length: Bytes = 20
    types: tuple[str, ...] = ("text/html",)
    proxied: Literal["off", "any", "expired"] = "off"


@dataclass(frozen=True, slots=True)
class Block:
    certificate: Annotated[str, Text("a file name")]
    timeout: Seconds = 60.0
    buffers: Positive = 8
    compression: Compression | None = None


def structure(data: Any) -> Block:
    block: Block = load._structure(data, Block, base_dir="/", check_paths=False)
    return block


def problems(data: Any) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        structure(data)
    return [str(issue) for issue in info.value.issues]


def test_a_new_block_needs_only_its_annotations() -> None:
    block = structure(
        {"certificate": "a.pem", "timeout": "1m30s", "compression": {"min_length": "1k"}}
    )
    assert block == Block("a.pem", 90.0, 8, Compression(1, 1024, ("text/html",), "off"))
    # nginx's one-value forms come with the types: `on`/`true` for the defaults, `off`,
    # and a single value for a list.
    block = structure({"certificate": "a.pem", "compression": True})
    assert block.compression == Compression()
    assert structure({"certificate": "a.pem", "compression": "off"}).compression is None
    block = structure({"certificate": "a.pem", "compression": {"types": "text/css"}})
    assert block.compression is not None and block.compression.types == ("text/css",)


def test_a_new_block_reports_every_mistake_in_document_order() -> None:
    assert problems(
        {
            "timeout": "soon",
            "compression": {"level": 10, "proxied": "anny", "min_lenght": 1},
            "buffers": 0,
            "extra": 1,
        }
    ) == [
        "missing required key 'certificate'",
        "timeout: expected a duration like 60s or 500ms, got 'soon'",
        "compression.level: must be at most 9, got 10",
        "compression.proxied: expected one of off, any, expired, got 'anny' (did you mean 'any'?)",
        "compression.min_lenght: unknown key (did you mean 'min_length'?)",
        "buffers: must be at least 1, got 0",
        "extra: unknown key",
    ]


# --- the real schema ---------------------------------------------------------------------

# Fields that are deliberately no YAML key of their own.
NOT_KEYS = {
    "EdgeConfig.source",  # the file it was read from
    "Location.match",  # both from the location's `path`
    "Location.handler",  # chosen by root/alias, proxy or return
    "Upstream.name",  # the keys of the mappings they are items of
    "LimitReqZone.name",
    "LimitConnZone.name",
    "ProxyParam.name",
    "AddHeader.name",
    "LogFormatSpec.name",
}
# Classes written as one scalar in YAML ("127.0.0.1:80", "deny all", "4 8k", "30d").
SCALARS = {"Endpoint", "Listen", "AccessRule", "HeaderBuffers", "Expires", "ErrorPage"}


def schema_fields() -> set[str]:
    found: set[str] = set()
    seen: set[object] = set()

    def walk(tp: Any) -> None:
        if tp in seen:
            return
        seen.add(tp)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            if tp.__name__ in SCALARS:
                return
            hints = typing.get_type_hints(tp, include_extras=True)
            for field in dataclasses.fields(tp):
                found.add(f"{tp.__name__}.{field.name}")
                walk(hints[field.name])
        for arg in typing.get_args(tp):
            walk(arg)

    walk(EdgeConfig)
    return found


def test_every_schema_field_is_a_yaml_key_or_deliberately_not() -> None:
    keys, _ = load.yaml_vocabulary()
    reachable = {origin for origins in keys.values() for origin in origins}
    assert schema_fields() - reachable == NOT_KEYS


def test_every_schema_field_is_structured_by_edge_hooks() -> None:
    # Not by a cattrs default, which would accept anything of roughly the right shape and
    # word its errors its own way: a field of a type with no YAML syntax fails here.
    converter = load._STRUCTURER.converter
    for field in sorted(schema_fields() - NOT_KEYS):
        owner, name = field.split(".")
        cls = next(
            tp for tp in vars(schema).values() if isinstance(tp, type) and tp.__name__ == owner
        )
        hook = converter.get_structure_hook(typing.get_type_hints(cls, include_extras=True)[name])
        assert hook.__qualname__ == "_cattrs_hook.<locals>.structure", field
