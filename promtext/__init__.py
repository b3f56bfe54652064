"""The Prometheus text exposition format (0.0.4), shared by edge and appserver.

One rule, one place: how a label value is escaped, how a number is written,
how a histogram's cells become cumulative ``_bucket`` lines with ``+Inf``,
``_sum`` and ``_count``, and how families are laid out (HELP, TYPE, then
their samples).  Both servers keep their figures as int64 cells in shared
memory; a histogram is ``HISTOGRAM_CELLS`` of them: one per bucket (values
``<=`` its bound, not cumulative), one for ``+Inf``, then the sum in
microseconds.  ``observe`` counts into such cells; ``histogram_lines``
renders them.

Stdlib only, no sockets, no clock: the servers read their memory and pass
plain numbers in.  ``promtool check metrics`` passes on what this writes
(tests/integration/test_edge_metrics.py, test_appserver_metrics.py).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]
Labels = Iterable[tuple[str, str]]

# Prometheus' default buckets (seconds); cells hold microseconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BOUNDS_US = tuple(round(bound * 1_000_000) for bound in BUCKETS)
HISTOGRAM_CELLS = len(BUCKETS) + 2  # the buckets, +Inf, then the sum in microseconds


@dataclass(frozen=True, slots=True)
class Family:
    """One metric name: its type and help text."""

    name: str
    kind: Kind
    help: str


def observe(cells: memoryview, base: int, seconds: float) -> None:
    """Count ``seconds`` in the histogram whose cells start at ``base`` (one writer per cells)."""
    micros = int(seconds * 1_000_000)
    cells[base + bisect_left(BOUNDS_US, micros)] += 1
    cells[base + HISTOGRAM_CELLS - 1] += micros


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_text(labels: Labels) -> str:
    """``{a="x",b="y"}`` with the format's escapes (backslash, double quote, newline)."""
    parts = [f'{name}="{_escape(value)}"' for name, value in labels]
    return "{" + ",".join(parts) + "}" if parts else ""


def number(value: float) -> str:
    """An int as digits, a float as Python's shortest round-trip repr."""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def sample(name: str, labels: Labels, value: float) -> str:
    return f"{name}{label_text(labels)} {number(value)}"


def histogram_lines(
    name: str, labels: Sequence[tuple[str, str]], cells: Sequence[int]
) -> list[str]:
    """``_bucket`` (cumulative, ``+Inf`` last), ``_sum`` (seconds) and ``_count`` lines."""
    lines = []
    cumulative = 0
    for bound, value in zip((*BUCKETS, None), cells, strict=False):
        cumulative += value
        le = "+Inf" if bound is None else repr(bound)
        lines.append(f"{name}_bucket{label_text((*labels, ('le', le)))} {cumulative}")
    text = label_text(labels)
    lines.append(f"{name}_sum{text} {number(cells[HISTOGRAM_CELLS - 1] / 1_000_000)}")
    lines.append(f"{name}_count{text} {cumulative}")
    return lines


def exposition(families: Iterable[Family], samples: Mapping[str, Sequence[str]]) -> bytes:
    """The whole text: each family that has samples, in ``families`` order."""

    def render() -> Iterator[str]:
        for family in families:
            lines = samples.get(family.name)
            if not lines:
                continue
            yield f"# HELP {family.name} {family.help}"
            yield f"# TYPE {family.name} {family.kind}"
            yield from lines

    return ("\n".join(render()) + "\n").encode("utf-8")
