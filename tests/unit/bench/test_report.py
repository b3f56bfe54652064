"""Report math (median, ratio, target checks) and the case table's consistency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import cases
from bench.cases import CASES, TARGETS, CpuTarget, LimitTarget, RatioTarget, target_cases
from bench.cpu import CpuUsage, ProcessCpu
from bench.report import (
    CaseResult,
    Summary,
    anchor_ratio,
    evaluate,
    evaluate_all,
    median,
    median_cpu,
    ratio,
    render_markdown,
    summarize,
    to_json,
)
from bench.servers import APPS, Environment, backend_command, edge_config, nginx_config
from bench.wrk import WrkResult


def run(rps: float, p50: float = 1.0, p99: float = 2.0, **errors: int) -> WrkResult:
    return WrkResult(
        requests=int(rps * 10),
        duration_s=10.0,
        requests_per_s=rps,
        latency_avg_ms=p50,
        latency_max_ms=p99 * 2,
        p50_ms=p50,
        p75_ms=p50,
        p90_ms=p99,
        p99_ms=p99,
        **errors,
    )


def summary(
    rps: float, *, errors: int = 0, p99: float = 2.0, cpu: dict[str, float] | None = None
) -> Summary:
    return Summary(
        requests_per_s=rps,
        p50_ms=1.0,
        p99_ms=p99,
        errors=errors,
        runs=3,
        cpu_us_per_request=cpu or {},
    )


def cpu_run(**workers: float) -> CpuUsage:
    """One run's CPU: a master that did nothing and one worker per program."""
    processes = []
    for pid, (program, us) in enumerate(workers.items()):
        processes += [
            ProcessCpu(program, "master", 2 * pid, 0.5),
            ProcessCpu(program, "worker", 2 * pid + 1, us),
        ]
    return CpuUsage(tuple(processes))


# -- median, summarize, ratio ---------------------------------------------------


def test_median_odd_and_even() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([7.0]) == 7.0


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        median([])


def test_summarize_takes_medians_and_sums_errors() -> None:
    runs = [run(100, 1, 10), run(300, 3, 30, read_errors=1), run(200, 2, 20, non_2xx=2)]
    assert summarize(runs) == Summary(
        requests_per_s=200.0, p50_ms=2.0, p99_ms=20.0, errors=3, runs=3
    )


def test_summarize_takes_cpu_medians_per_program() -> None:
    runs = [run(100), run(300), run(200)]
    usages = [cpu_run(edge=90, appserver=60), cpu_run(edge=100, appserver=70)]
    usages.append(cpu_run(edge=300, appserver=50))
    assert median_cpu(usages) == {"edge": 100.0, "appserver": 60.0}
    assert list(summarize(runs, usages).cpu_us_per_request) == ["edge", "appserver"]
    assert summarize(runs).cpu_us_per_request == {}


def test_ratio() -> None:
    assert ratio(150.0, 100.0) == pytest.approx(1.5)
    assert ratio(1.0, 0.0) is None


# -- targets --------------------------------------------------------------------

TARGET = RatioTarget("t", "ours/x", ("a/x", "b/x"), 1.5)


def test_ratio_target_uses_the_best_anchor() -> None:
    result = evaluate(TARGET, {"ours/x": summary(300), "a/x": summary(100), "b/x": summary(250)})
    assert result.status == "not met"
    assert result.value == pytest.approx(1.2)
    assert "b/x" in result.detail


def test_ratio_target_met_at_exactly_the_minimum() -> None:
    result = evaluate(TARGET, {"ours/x": summary(150), "a/x": summary(100), "b/x": summary(50)})
    assert result.status == "met"
    assert result.value == pytest.approx(1.5)


def test_ratio_target_missing_when_any_side_is_not_measured() -> None:
    result = evaluate(TARGET, {"ours/x": summary(150), "a/x": None, "b/x": summary(50)})
    assert result.status == "missing"
    assert "a/x" in result.detail
    assert evaluate(TARGET, {"a/x": summary(1), "b/x": summary(1)}).status == "missing"


def test_ratio_target_with_an_anchor_that_served_nothing() -> None:
    result = evaluate(TARGET, {"ours/x": summary(150), "a/x": summary(0), "b/x": summary(0)})
    assert result.status == "missing"


LIMIT = LimitTarget("overload", "edge/x@256", max_errors=0, max_p99_ms=1000.0)


@pytest.mark.parametrize(
    ("errors", "p99", "status"),
    [(0, 999.0, "met"), (1, 10.0, "not met"), (0, 1000.0, "not met")],
)
def test_limit_target(errors: int, p99: float, status: str) -> None:
    result = evaluate(LIMIT, {"edge/x@256": summary(500, errors=errors, p99=p99)})
    assert result.status == status
    assert result.value == p99


def test_limit_target_missing() -> None:
    assert evaluate(LIMIT, {}).status == "missing"


CPU = CpuTarget("cpu", "n+a/raw", "appserver", "n+u/raw", "uwsgi", maximum=1.5)


@pytest.mark.parametrize(("ours", "status"), [(75.0, "met"), (76.0, "not met"), (20.0, "met")])
def test_cpu_target(ours: float, status: str) -> None:
    summaries = {
        "n+a/raw": summary(900, cpu={"nginx": 140.0, "appserver": ours}),
        "n+u/raw": summary(1000, cpu={"nginx": 150.0, "uwsgi": 50.0}),
    }
    result = evaluate(CPU, summaries)
    assert result.status == status
    assert result.value == pytest.approx(ours / 50.0)
    assert result.detail == f"appserver {ours:.0f} µs vs uwsgi 50 µs"


def test_cpu_target_missing() -> None:
    no_cpu = {"n+a/raw": summary(900), "n+u/raw": summary(1000, cpu={"uwsgi": 50.0})}
    result = evaluate(CPU, no_cpu)
    assert (result.status, result.detail) == ("missing", "no CPU figure for appserver in n+a/raw")
    assert evaluate(CPU, {"n+u/raw": summary(1000)}).status == "missing"
    idle = {"n+a/raw": summary(9, cpu={"appserver": 5.0}), "n+u/raw": summary(9, cpu={"uwsgi": 0})}
    assert evaluate(CPU, idle).status == "missing"


# -- the case table -------------------------------------------------------------


def test_case_ids_are_unique_and_anchors_exist() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    for case in CASES:
        assert case.anchor is None or case.anchor in ids, case.id


def test_every_target_names_real_cases_that_quick_runs() -> None:
    quick = {case.id for case in CASES if case.quick}
    for target in TARGETS:
        for name in target_cases(target):
            assert name in quick, (target.name, name)


def test_the_issue_targets() -> None:
    ratios = {(t.ours, t.anchors, t.minimum) for t in TARGETS if isinstance(t, RatioTarget)}
    hellos = ("raw-hello", "django-min", "django-hello")
    gunicorns = ("gunicorn-sync", "gunicorn-gthread")
    assert ratios == {
        # issue 8
        ("edge/static-1k", ("nginx/static-1k",), 0.5),
        ("edge/static-100k", ("nginx/static-100k",), 0.8),
        *((f"edge+appserver/{e}", (f"nginx+uwsgi/{e}",), 1.0) for e in hellos),
        *((f"edge+gunicorn/{e}", (f"nginx+gunicorn/{e}",), 1.0) for e in hellos),
        # issue 9
        ("nginx+appserver/raw-hello", ("nginx+uwsgi/raw-hello",), 0.9),
        ("nginx+appserver/django-min", ("nginx+uwsgi/django-min",), 1.0),
        ("appserver/django-hello", ("uwsgi/django-hello",), 1.1),
        ("appserver/django-min", ("uwsgi/django-min",), 1.1),
        ("appserver/django-hello", tuple(f"{g}/django-hello" for g in gunicorns), 1.5),
        ("appserver/django-min", tuple(f"{g}/django-min" for g in gunicorns), 1.5),
        # issue 10, TLS + HTTP/2 in front (h2load, 10 connections x 10 streams)
        ("edge-h2/static-1k@10x10", ("nginx-h2/static-1k@10x10",), 0.5),
        *(
            (f"edge-h2+appserver/{e}@10x10", (f"nginx-h2+uwsgi/{e}@10x10",), 1.0)
            for e in ("raw-hello", "django-min")
        ),
        # issue 5, met and not superseded
        ("edge/static-1k", ("gunicorn+whitenoise/static-1k",), 3.0),
    }
    limits = [t for t in TARGETS if isinstance(t, LimitTarget)]
    assert [(t.case, t.max_errors, t.max_p99_ms) for t in limits] == [
        ("edge+appserver/django-hello@256", 0, 500.0)
    ]
    cpu = [t for t in TARGETS if isinstance(t, CpuTarget)]
    assert [(t.ours, t.program, t.anchor, t.anchor_program, t.maximum) for t in cpu] == [
        ("nginx+appserver/raw-hello", "appserver", "nginx+uwsgi/raw-hello", "uwsgi", 1.5)
    ]
    assert [c.connections for c in CASES if c.group == "overload"] == [256, 256]


def test_the_sampleapp_hello_and_the_minimal_django_hello() -> None:
    by_id = cases.case_by_id()
    # django-hello is the sample app's /hello (shop.urls), django-min the bare app's.
    assert (cases.DJANGO_HELLO.app, cases.DJANGO_HELLO.path) == ("django", "/hello")
    assert (cases.DJANGO_MIN.app, cases.DJANGO_MIN.path) == ("django-min", "/hello")
    django_stacks = {c.stack.name for c in CASES if c.endpoint is cases.DJANGO_HELLO}
    min_stacks = {c.stack.name for c in CASES if c.endpoint is cases.DJANGO_MIN}
    # The TLS + HTTP/2 group measures django-min only, next to the raw hello.
    tls_stacks = {c.stack.name for c in CASES if c.group == "tls"}
    assert min_stacks - tls_stacks == django_stacks
    assert {"appserver", "nginx+appserver", "edge+appserver", "edge+appserver-oneshot", "uwsgi",
            "nginx+uwsgi", "gunicorn-sync", "gunicorn-gthread", "nginx+gunicorn",
            "edge+gunicorn"} <= min_stacks  # fmt: skip
    assert by_id["edge+appserver-oneshot/django-min"].anchor == "nginx+uwsgi/django-min"


def test_edge_to_appserver_persistent_and_one_shot(tmp_path: Path) -> None:
    persistent = cases.EDGE_APPSERVER
    oneshot = cases.EDGE_APPSERVER_ONESHOT
    assert (persistent.upstream_keepalive, oneshot.upstream_keepalive) == (32, 0)
    assert (persistent.front, persistent.backend, persistent.protocol) == (
        oneshot.front,
        oneshot.backend,
        oneshot.protocol,
    )
    default = edge_config(tmp_path, 1, 2, "uwsgi", tmp_path)
    assert "    keepalive: 32\n" in default
    assert "    keepalive: 0\n" in edge_config(tmp_path, 1, 2, "uwsgi", tmp_path, keepalive=0)
    assert "protocol: uwsgi" in default
    oneshot_ids = {c.endpoint.name for c in CASES if c.stack is oneshot}
    assert oneshot_ids == {"raw-hello", "django-min", "django-hello"}


def test_nginx_upstream_keepalive(tmp_path: Path) -> None:
    assert "keepalive 32;" in nginx_config(tmp_path, 1, 2, "http", tmp_path, as_root=False)
    uwsgi = nginx_config(tmp_path, 1, 2, "uwsgi", tmp_path, as_root=False)
    assert "uwsgi_pass backend;" in uwsgi
    assert "keepalive " not in uwsgi  # nginx keeps no uwsgi connections


def test_backends_load_the_minimal_django_app(tmp_path: Path) -> None:
    env = Environment(tmp_path, server_cpus=None)
    for stack in (cases.APPSERVER, cases.UWSGI, cases.GUNICORN_SYNC):
        argv = backend_command(env, stack, "django-min", 9)
        assert "django_min.wsgi:application" in argv, stack.name
        assert str(APPS) in argv, stack.name


def test_one_worker_process_per_server(tmp_path: Path) -> None:
    env = Environment(tmp_path, server_cpus=None)
    for case in CASES:
        stack = case.stack
        if stack.backend is not None:
            argv = backend_command(env, stack, case.endpoint.app, 9)
            flag = "--workers" if stack.backend.startswith("gunicorn") else "--processes"
            assert argv[argv.index(flag) + 1] == "1", case.id
        if stack.front == "nginx":
            conf = nginx_config(tmp_path, 1, 2, stack.protocol, tmp_path, as_root=False)
            assert "worker_processes 1;" in conf
        if stack.front == "edge":
            assert "worker_processes: 1" in edge_config(tmp_path, 1, 2, stack.protocol, tmp_path)


# -- outputs --------------------------------------------------------------------


META: dict[str, Any] = {
    "date": "2026-01-01 00:00 UTC",
    "machine": {"cpu": "Test CPU", "cores": 2, "kernel": "Linux 6"},
    "versions": {"Python": "3.11", "wrk": "4.1.0"},
    "settings": {
        "mode": "quick",
        "runs": 1,
        "duration_s": 3,
        "warmup": "100 requests",
        "pinning": "wrk on CPU 0, servers on CPU 1",
        "gthread_threads": 4,
        "only": [],
    },
    "elapsed_s": 12.0,
}


def _results() -> list[CaseResult]:
    by_id = cases.case_by_id()
    return [
        CaseResult(by_id["appserver/raw-hello"], "ok", runs=[run(900)]),
        CaseResult(by_id["uwsgi/raw-hello"], "ok", runs=[run(1000)]),
        CaseResult(by_id["edge+appserver/raw-hello"], "missing", "no edge CLI | yet"),
        CaseResult(by_id["uwsgi/django-json"], "not run", "left out by --quick"),
    ]


def test_anchor_ratio_and_markdown() -> None:
    results = _results()
    results[0].cpu = [cpu_run(appserver=120.4)]
    results[1].cpu = [cpu_run(uwsgi=55.0)]
    by_id = {r.case.id: r for r in results}
    assert anchor_ratio(results[0], by_id) == pytest.approx(0.9)
    assert anchor_ratio(results[2], by_id) is None
    text = render_markdown(META, results, evaluate_all(TARGETS, results))
    assert "0.90× uwsgi" in text
    assert "| 0 | appserver 120 | 0.90× uwsgi |" in text  # the CPU column, before the ratio
    assert "| 0 | uwsgi 55 | anchor |" in text
    assert "| — | — | — | — | — | missing: no edge CLI / yet |" in text
    assert "missing: no edge CLI / yet" in text  # a pipe would break the table
    assert "not run: left out by --quick" in text
    assert "Test CPU, 2 cores" in text
    assert "Warning" not in text
    # The load after a run is the run's own: only the load before warns.
    machine = {"cpu": "Test CPU", "cores": 2, "kernel": "Linux 6", "load_average_1m": [0.2, 3.5]}
    assert "Warning" not in render_markdown({**META, "machine": machine}, results, [])
    machine = {"cpu": "Test CPU", "cores": 2, "kernel": "Linux 6", "load_average_1m": [1.4, 3.5]}
    busy = {**META, "machine": machine}
    assert "busy before the run (1-minute load average 1.4)" in render_markdown(busy, results, [])
    assert text.count("⚠️ missing") == len(TARGETS)  # nothing a target needs was measured


def test_json_is_serialisable_and_complete() -> None:
    results = _results()
    results[0].cpu = [cpu_run(appserver=120.0), cpu_run(appserver=130.0)]
    data = json.loads(json.dumps(to_json(META, results, evaluate_all(TARGETS, results))))
    assert [case["id"] for case in data["cases"]] == [r.case.id for r in results]
    assert data["cases"][0]["ratio_to_anchor"] == pytest.approx(0.9)
    assert data["cases"][0]["summary"]["requests_per_s"] == 900
    assert data["cases"][2]["summary"] is None
    assert data["cases"][0]["summary"]["cpu_us_per_request"] == {"appserver": 125.0}
    assert [u["per_program_us"] for u in data["cases"][0]["cpu_runs"]] == [
        {"appserver": 120.0},
        {"appserver": 130.0},
    ]
    assert data["cases"][1]["cpu_runs"] == []
    assert len(data["targets"]) == len(TARGETS)
