"""Results -> medians, ratios, target checks -> markdown, JSON and a PNG chart.

The math (``median``, ``summarize``, ``ratio``, ``evaluate``) is pure and
unit-tested; the writers only format it.  CPU per request (``bench.cpu``) is
summarized like req/s: per program, the median over the runs.  A case is
``ok`` (measured), ``missing`` (its server is not installed or not written
yet), ``failed`` (it started but did not serve, or wrk failed) or ``not run``
(left out by ``--quick``); every case appears in every output whatever its
status.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from bench.cases import Case, CpuTarget, LimitTarget, RatioTarget, Target
from bench.cpu import CpuUsage, format_per_program
from bench.wrk import WrkResult

Status: TypeAlias = Literal["ok", "missing", "failed", "not run"]
TargetStatus: TypeAlias = Literal["met", "not met", "missing"]

BUSY_LOAD = 1.0  # a load average this high means someone else holds a core

GROUP_TITLES = {
    "views": "Django views and the raw WSGI hello",
    "static": "Static files",
    "overload": "Overload",
    "tls": "TLS + HTTP/2 in front (h2load, 10 connections x 10 streams)",
}


@dataclass(frozen=True, slots=True)
class Summary:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # summed over the runs, not a median: one error is one too many
    runs: int
    # µs of CPU per request of each program's workers (front first), median over the runs
    cpu_us_per_request: Mapping[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class CaseResult:
    case: Case
    status: Status
    reason: str = ""
    runs: list[WrkResult] = field(default_factory=list)
    cpu: list[CpuUsage] = field(default_factory=list)  # the runs whose CPU could be read

    @property
    def summary(self) -> Summary | None:
        return summarize(self.runs, self.cpu) if self.status == "ok" and self.runs else None


@dataclass(frozen=True, slots=True)
class TargetResult:
    target: Target
    status: TargetStatus
    value: float | None  # the ratio (req/s or CPU), or the p99 in ms for a limit target
    detail: str


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def median_cpu(usages: Sequence[CpuUsage]) -> dict[str, float]:
    """Per program (in first-seen order), the median of its workers' µs per request."""
    figures: dict[str, list[float]] = {}
    for usage in usages:
        for program, us in usage.per_program().items():
            figures.setdefault(program, []).append(us)
    return {program: median(values) for program, values in figures.items()}


def summarize(runs: Sequence[WrkResult], cpu: Sequence[CpuUsage] = ()) -> Summary:
    return Summary(
        requests_per_s=median([run.requests_per_s for run in runs]),
        p50_ms=median([run.p50_ms for run in runs]),
        p99_ms=median([run.p99_ms for run in runs]),
        errors=sum(run.errors for run in runs),
        runs=len(runs),
        cpu_us_per_request=median_cpu(cpu),
    )


def ratio(ours: float, anchor: float) -> float | None:
    """ours / anchor, or None when the anchor served nothing."""
    if anchor <= 0:
        return None
    return ours / anchor


def _evaluate_cpu(target: CpuTarget, summaries: Mapping[str, Summary | None]) -> TargetResult:
    sides = ((target.ours, target.program), (target.anchor, target.anchor_program))
    figures: list[float] = []
    for case_id, program in sides:
        measured = summaries.get(case_id)
        if measured is None:
            return TargetResult(target, "missing", None, f"not measured: {case_id}")
        us = measured.cpu_us_per_request.get(program)
        if us is None:
            return TargetResult(
                target, "missing", None, f"no CPU figure for {program} in {case_id}"
            )
        figures.append(us)
    ours, theirs = figures
    value = ratio(ours, theirs)
    if value is None:
        return TargetResult(target, "missing", None, f"{target.anchor_program} used no CPU")
    status: TargetStatus = "met" if value <= target.maximum else "not met"
    detail = f"{target.program} {ours:,.0f} µs vs {target.anchor_program} {theirs:,.0f} µs"
    return TargetResult(target, status, value, detail)


def evaluate(target: Target, summaries: Mapping[str, Summary | None]) -> TargetResult:
    """Check one target against the measured summaries (by case id)."""
    if isinstance(target, CpuTarget):
        return _evaluate_cpu(target, summaries)
    if isinstance(target, LimitTarget):
        measured = summaries.get(target.case)
        if measured is None:
            return TargetResult(target, "missing", None, f"{target.case} was not measured")
        met = measured.errors <= target.max_errors and measured.p99_ms < target.max_p99_ms
        detail = f"{measured.errors} errors, p99 {measured.p99_ms:.0f} ms"
        return TargetResult(target, "met" if met else "not met", measured.p99_ms, detail)
    ours = summaries.get(target.ours)
    anchors = {name: summaries.get(name) for name in target.anchors}
    absent = [name for name, s in ((target.ours, ours), *anchors.items()) if s is None]
    if ours is None or absent:
        return TargetResult(target, "missing", None, f"not measured: {', '.join(absent)}")
    best_name, best = max(
        ((name, s) for name, s in anchors.items() if s is not None),
        key=lambda item: item[1].requests_per_s,
    )
    value = ratio(ours.requests_per_s, best.requests_per_s)
    if value is None:
        return TargetResult(target, "missing", None, f"{best_name} served no requests")
    status: TargetStatus = "met" if value >= target.minimum else "not met"
    return TargetResult(target, status, value, f"vs {best_name}")


def evaluate_all(targets: Iterable[Target], results: Iterable[CaseResult]) -> list[TargetResult]:
    summaries = {result.case.id: result.summary for result in results}
    return [evaluate(target, summaries) for target in targets]


def anchor_ratio(result: CaseResult, by_id: Mapping[str, CaseResult]) -> float | None:
    anchor = by_id.get(result.case.anchor) if result.case.anchor else None
    ours = result.summary
    theirs = anchor.summary if anchor is not None else None
    if ours is None or theirs is None:
        return None
    return ratio(ours.requests_per_s, theirs.requests_per_s)


# -- markdown -------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _note(result: CaseResult, by_id: Mapping[str, CaseResult]) -> str:
    if result.status != "ok":
        return f"{result.status}: {result.reason}".replace("|", "/").replace("\n", " ")
    if result.case.anchor is None:
        return "anchor" if not result.case.stack.ours else ""
    value = anchor_ratio(result, by_id)
    anchor_stack = result.case.anchor.split("/", 1)[0]
    if value is not None:
        return f"{value:.2f}× {anchor_stack}"
    anchor = by_id.get(result.case.anchor)
    return f"(anchor {anchor_stack}: {anchor.status if anchor else 'not selected'})"


def _case_table(results: Sequence[CaseResult], by_id: Mapping[str, CaseResult]) -> list[str]:
    lines = [
        "| endpoint | stack | req/s | p50 ms | p99 ms | errors | CPU µs/req |"
        " ratio to anchor / note |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for result in results:
        case = result.case
        stack = f"**{case.stack.label}**" if case.stack.ours else case.stack.label
        summary = result.summary
        if summary is None:
            cells = ["—", "—", "—", "—", "—"]
        else:
            cells = [
                _number(summary.requests_per_s),
                _ms(summary.p50_ms),
                _ms(summary.p99_ms),
                str(summary.errors),
                format_per_program(summary.cpu_us_per_request),
            ]
        lines.append(
            f"| {case.endpoint.name} | {stack} | {' | '.join(cells)} | {_note(result, by_id)} |"
        )
    return lines


def _target_table(targets: Sequence[TargetResult]) -> list[str]:
    lines = ["| target | required | measured | status |", "|---|--:|---|---|"]
    for result in targets:
        target = result.target
        if isinstance(target, RatioTarget | CpuTarget):
            required = (
                f"≥ {target.minimum:.1f}×"
                if isinstance(target, RatioTarget)
                else f"CPU ≤ {target.maximum:.1f}×"
            )
            measured = (
                f"{result.value:.2f}× {result.detail}"
                if result.value is not None
                else result.detail
            )
        else:
            required = f"{target.max_errors} errors, p99 < {target.max_p99_ms:.0f} ms"
            measured = result.detail
        mark = {"met": "✅ met", "not met": "❌ not met", "missing": "⚠️ missing"}[result.status]
        lines.append(f"| {target.name} | {required} | {measured} | {mark} |")
    return lines


def render_markdown(
    meta: Mapping[str, Any], results: Sequence[CaseResult], targets: Sequence[TargetResult]
) -> str:
    by_id = {result.case.id: result for result in results}
    machine = meta["machine"]
    versions = " · ".join(f"{name} {version}" for name, version in meta["versions"].items())
    settings = meta["settings"]
    lines = [
        f"# wsgistack benchmark ({settings['mode']})",
        "",
        f"- **Date:** {meta['date']}",
        f"- **Machine:** {machine['cpu']}, {machine['cores']} cores, {machine['kernel']}; "
        f"{settings['pinning']}"
        + (
            f"; load average {machine['load_average_1m'][0]:.1f} before, "
            f"{machine['load_average_1m'][1]:.1f} after (the run's own)"
            if machine.get("load_average_1m")
            else ""
        ),
        f"- **Versions:** {versions}",
        f"- **Method:** wrk 1 thread `--latency` on loopback; {settings['runs']} × "
        f"{settings['duration_s']} s per case, in rounds (every case once per round, its server "
        f"started and warmed up ({settings['warmup']}) each time); medians of req/s, p50, p99; "
        "errors = connect + read + write + timeout + non-2xx, summed over the runs. "
        "Every server runs 1 worker process "
        f"(gunicorn gthread: {settings['gthread_threads']} threads). "
        "CPU µs/req: utime + stime of each server's worker processes over the timed run "
        "(from /proc), divided by the requests wrk counted; medians over the runs. "
        "**Bold** stacks are ours; the ratio is req/s over the named anchor's.",
    ]
    load = machine.get("load_average_1m")
    # Only the figure from before the run says anything about other processes: the one
    # after still counts wrk and the servers that were just measured.
    if load and load[0] >= BUSY_LOAD:
        lines.append(
            f"- **Warning:** the machine was busy before the run (1-minute load average "
            f"{load[0]:.1f}): other processes competed for the cores, so these figures and "
            "ratios are noisy."
        )
    if meta.get("elapsed_s"):
        lines.append(f"- **Run time:** {meta['elapsed_s']:.0f} s")
    if settings.get("only"):
        lines.append(f"- **Filter:** only cases matching {settings['only']}")
    lines += ["", "## Targets", "", *_target_table(targets)]
    for group, title in GROUP_TITLES.items():
        members = [result for result in results if result.case.group == group]
        if not members:
            continue
        # Endpoint-major, so each endpoint's stacks sit together (stable: table order within).
        endpoints = {
            name: i for i, name in enumerate(dict.fromkeys(m.case.endpoint.name for m in members))
        }
        members.sort(key=lambda result: endpoints[result.case.endpoint.name])
        connections = sorted({result.case.connections for result in members})
        lines += ["", f"## {title} ({', '.join(map(str, connections))} connections)", ""]
        lines += _case_table(members, by_id)
    lines.append("")
    return "\n".join(lines)


# -- JSON -----------------------------------------------------------------------


def to_json(
    meta: Mapping[str, Any], results: Sequence[CaseResult], targets: Sequence[TargetResult]
) -> dict[str, Any]:
    by_id = {result.case.id: result for result in results}
    cases = []
    for result in results:
        case = result.case
        summary = result.summary
        cases.append(
            {
                "id": case.id,
                "group": case.group,
                "stack": case.stack.name,
                "label": case.stack.label,
                "ours": case.stack.ours,
                "endpoint": case.endpoint.name,
                "path": case.endpoint.path,
                "connections": case.connections,
                "anchor": case.anchor,
                "status": result.status,
                "reason": result.reason,
                "summary": None
                if summary is None
                else {
                    "requests_per_s": summary.requests_per_s,
                    "p50_ms": summary.p50_ms,
                    "p99_ms": summary.p99_ms,
                    "errors": summary.errors,
                    "runs": summary.runs,
                    "cpu_us_per_request": dict(summary.cpu_us_per_request),
                },
                "ratio_to_anchor": anchor_ratio(result, by_id),
                "runs": [run.to_json() for run in result.runs],
                "cpu_runs": [usage.to_json() for usage in result.cpu],
            }
        )
    return {
        "meta": dict(meta),
        "cases": cases,
        "targets": [
            {
                "name": target.target.name,
                "kind": _KINDS[type(target.target)],
                "status": target.status,
                "value": target.value,
                "detail": target.detail,
            }
            for target in targets
        ],
    }


_KINDS: dict[type, str] = {RatioTarget: "ratio", LimitTarget: "limit", CpuTarget: "cpu"}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


# -- chart ----------------------------------------------------------------------


def write_png(path: Path, meta: Mapping[str, Any], results: Sequence[CaseResult]) -> None:
    """One panel per endpoint, a horizontal bar per stack: ours in blue, anchors in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[CaseResult]] = {}
    for result in results:
        case = result.case
        key = f"{case.endpoint.name} @ {case.connections} connections"
        panels.setdefault(key, []).append(result)
    columns = 2
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(14, 3.2 * rows), squeeze=False)
    for axis, (title, members) in zip(axes.flat, panels.items(), strict=False):
        labels = [result.case.stack.label for result in members]
        values = [result.summary.requests_per_s if result.summary else 0.0 for result in members]
        colours = ["#1f77b4" if result.case.stack.ours else "#9e9e9e" for result in members]
        positions = range(len(members))
        axis.barh(list(positions), values, color=colours)
        axis.set_yticks(list(positions), labels, fontsize=8)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("requests/s (median)", fontsize=8)
        axis.tick_params(axis="x", labelsize=8)
        top = max(values, default=0.0) or 1.0
        for position, result, value in zip(positions, members, values, strict=True):
            text = _number(value) if result.summary else result.status
            axis.text(value + top * 0.01, position, text, va="center", fontsize=7)
        axis.set_xlim(0, top * 1.18)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    machine = meta["machine"]
    figure.suptitle(
        f"wsgistack bench ({meta['settings']['mode']}) — {meta['date']} — "
        f"{machine['cpu']}, {machine['cores']} cores — blue: ours, grey: anchors",
        fontsize=11,
    )
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=100)
    plt.close(figure)
