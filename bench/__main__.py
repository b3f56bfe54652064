"""``python -m bench [--quick]``: run every case, write bench/results/.

Theory of operation: the harness pins itself and wrk to one CPU and every
server to another, installs what it may (wrk with apt-get as root,
WhiteNoise and matplotlib with pip), creates a temp directory with the SQLite
database and the static files, then walks the case table grouped by
deployment (stack + app): start the servers, check each endpoint answers 200,
warm up, run wrk ``runs`` times, stop the servers.  A case whose server is
not available is recorded as missing with the reason; nothing is dropped.
"""

from __future__ import annotations

import argparse
import fnmatch
import http.client
import importlib.util
import os
import platform
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import cpu, h2load, report, servers, wrk
from bench.cases import CASES, GTHREAD_THREADS, H2_CLIENTS, H2_STREAMS, TARGETS, App, Case, Stack
from bench.cpu import CpuUsage
from bench.report import CaseResult
from bench.servers import Deployment, Environment, StartError
from bench.wrk import WrkResult

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_WARMUP_REQUESTS = 100
QUICK_WARMUP_MAX_S = 0.25
FULL_WARMUP_S = 2
WRK_TIMEOUT_S = 5
PROBE_DEADLINE_S = 20.0
QUICK_BUDGET_S = 180  # issue 5: `make bench-quick` under 3 minutes


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark wsgistack against nginx, uWSGI and gunicorn on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="1 x 3 s per case (smoke check)")
    parser.add_argument("--runs", type=int, help="timed runs per case (default 3, quick 1)")
    parser.add_argument("--duration", type=int, help="seconds per run (default 10, quick 3)")
    parser.add_argument(
        "--only", action="append", metavar="GLOB", help="run only case ids matching (repeatable)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="output directory")
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get/pip install missing tools"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    return parser.parse_args(argv)


# -- machine, versions, installs ------------------------------------------------


def _pick_cpus() -> tuple[str | None, str | None, str]:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2 or shutil.which("taskset") is None:
        return None, None, "no CPU pinning (fewer than 2 CPUs or no taskset): noisier figures"
    load, server = str(available[0]), str(available[1])
    return load, server, f"wrk and the harness on CPU {load}, every server on CPU {server}"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def _versions(env: Environment, wrk_path: str | None) -> dict[str, str]:
    def package(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    nginx = servers.nginx_binary()
    uwsgi = env.tool("uwsgi")
    nginx_text = _output([nginx, "-v"]) if nginx else ""
    wrk_words = _output([wrk_path, "-v"]).split() if wrk_path else []
    return {
        "Python": platform.python_version(),
        "Django": package("Django"),
        "uWSGI": _output([uwsgi, "--version"]) if uwsgi else "not installed",
        "gunicorn": package("gunicorn"),
        "nginx": nginx_text.rpartition("/")[2] if "nginx/" in nginx_text else "not installed",
        "wrk": wrk_words[1] if len(wrk_words) > 1 else "not installed",
        "WhiteNoise": package("whitenoise"),
        "wsgistack": package("wsgistack"),
    }


def _ensure_package(module: str, requirement: str, install: bool) -> str | None:
    """Import ``module`` or pip-install ``requirement`` into this venv; the reason if missing."""
    if importlib.util.find_spec(module) is not None:
        return None
    if not install:
        return f"{requirement} is not installed (--no-install given)"
    print(f"bench: pip install {requirement}", file=sys.stderr)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", requirement],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    importlib.invalidate_caches()
    if importlib.util.find_spec(module) is None:
        return (
            f"{requirement} is not installed and pip install failed: {done.stderr.strip()[-200:]}"
        )
    return None


# -- one case -------------------------------------------------------------------


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """HTTP/1.1 to ``url``'s server; over TLS without verifying (the bench's own certificate)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=timeout,
            context=ssl._create_unverified_context(),  # noqa: S323 - our own test certificate
        )  # fmt: skip
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)


def _get(url: str, timeout: float) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = _connection(url, timeout)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _probe(url: str, size: int | None) -> str | None:
    """None when ``url`` answers 200 with a body (of ``size`` bytes); else what went wrong.

    5xx and connection errors are retried until the deadline (a backend may
    still be loading Django behind a front that is already up).
    """
    deadline = time.monotonic() + PROBE_DEADLINE_S
    while True:
        try:
            status, body = _get(url, timeout=10)
            if status == 200 and body and (size is None or len(body) == size):
                return None
            problem = f"GET {urlsplit(url).path} -> {status}, {len(body)} bytes: {body[:100]!r}"
            if status < 500:
                return problem
        except OSError as exc:
            problem = f"GET {urlsplit(url).path}: {exc}"
        if time.monotonic() > deadline:
            return problem
        time.sleep(0.2)


def _warm_up_requests(url: str, count: int, max_seconds: float) -> None:
    """Up to ``count`` sequential requests, stopping after ``max_seconds``."""
    parts = urlsplit(url)
    deadline = time.monotonic() + max_seconds
    connection: http.client.HTTPConnection | None = None
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        current = connection or _connection(url, 10)
        connection = current
        try:
            current.request("GET", parts.path or "/")
            response = current.getresponse()
            response.read()
            reuse = not response.will_close
        except (OSError, http.client.HTTPException):
            reuse = False
        if not reuse:
            current.close()
            connection = None
    if connection is not None:
        connection.close()


class Runner:
    def __init__(self, args: argparse.Namespace, wrk_path: str, load_cpus: str | None) -> None:
        self.args = args
        self.wrk_path = wrk_path
        self.load_cpus = load_cpus
        self.ticks_per_s = cpu.ticks_per_second()

    def measure_once(
        self, case: Case, base_url: str, roots: Sequence[tuple[str, int]]
    ) -> tuple[WrkResult, CpuUsage | None] | CaseResult:
        """Check the endpoint, warm up, then one timed run; a failed CaseResult if not.

        The CPU time of every process under ``roots`` (program, pid) is read
        right before and right after the timed run.
        """
        url = base_url + case.endpoint.path
        problem = _probe(url, case.endpoint.size)
        if problem:
            return CaseResult(case, "failed", problem)
        try:
            if case.stack.tls:
                warm_up = 1 if self.args.quick else FULL_WARMUP_S
                self._h2load(url, warm_up)
                before = cpu.snapshot(roots)
                result = self._h2load(url, self.args.duration)
                after = cpu.snapshot(roots)
            else:
                if self.args.quick:
                    _warm_up_requests(url, QUICK_WARMUP_REQUESTS, QUICK_WARMUP_MAX_S)
                else:
                    wrk.run(self._command(case, url, FULL_WARMUP_S), FULL_WARMUP_S)
                before = cpu.snapshot(roots)
                result = wrk.run(self._command(case, url, self.args.duration), self.args.duration)
                after = cpu.snapshot(roots)
        except wrk.WrkError as exc:
            return CaseResult(case, "failed", str(exc))
        return result, cpu.usage(before, after, result.requests, self.ticks_per_s)

    def _h2load(self, url: str, duration: int) -> WrkResult:
        log = Path(tempfile.mkstemp(prefix="bench-h2load-", suffix=".log")[1])
        argv = h2load.command(
            url, clients=H2_CLIENTS, streams=H2_STREAMS, duration_s=duration, warm_up_s=0,
            log=log, cpus=self.load_cpus,
        )  # fmt: skip
        try:
            return h2load.run(argv, duration, log)
        finally:
            log.unlink(missing_ok=True)

    def _command(self, case: Case, url: str, duration: int) -> list[str]:
        return wrk.command(
            url, connections=case.connections, duration_s=duration, timeout_s=WRK_TIMEOUT_S,
            cpus=self.load_cpus, wrk=self.wrk_path,
        )  # fmt: skip


def _deployments(cases: Sequence[Case]) -> list[tuple[Stack, App, list[Case]]]:
    """Cases grouped by (stack, app) in table order: one server start per group."""
    groups: dict[tuple[str, App], tuple[Stack, App, list[Case]]] = {}
    for case in cases:
        key = (case.stack.name, case.endpoint.app)
        groups.setdefault(key, (case.stack, case.endpoint.app, []))[2].append(case)
    return list(groups.values())


def _line(result: CaseResult) -> str:
    summary = result.summary
    if summary is None:
        return f"{result.case.id}: {result.status}: {result.reason[:160]}"
    return (
        f"{result.case.id}: {summary.requests_per_s:,.0f} req/s, p50 {summary.p50_ms:.1f} ms, "
        f"p99 {summary.p99_ms:.1f} ms, {summary.errors} errors, "
        f"CPU µs/req {cpu.format_per_program(summary.cpu_us_per_request)}"
    )


def _run_cases(
    args: argparse.Namespace,
    cases: Sequence[Case],
    env: Environment,
    runner: Runner | None,
    wrk_reason: str,
) -> dict[str, CaseResult]:
    results: dict[str, CaseResult] = {}
    to_run = [case for case in cases if case.quick or not args.quick]
    for case in cases:
        if case not in to_run:
            results[case.id] = CaseResult(case, "not run", "left out by --quick")
    django_error: str | None = None
    if runner is not None and any(case.endpoint.app == "django" for case in to_run):
        if importlib.util.find_spec("django") is not None:
            django_error = servers.migrate_django(env)
    # Rounds: every case once per round, the rounds one after the other.  A machine
    # whose speed drifts over half an hour (a shared host) then slows every case alike,
    # instead of whichever cases ran during the slow minutes.
    usable: list[tuple[Stack, App, list[Case]]] = []
    for stack, app, members in _deployments(to_run):
        reason = wrk_reason if runner is None else servers.missing_reason(env, stack, app)
        if reason or runner is None:
            for case in members:
                results[case.id] = CaseResult(case, "missing", reason or wrk_reason)
        elif app == "django" and django_error:
            for case in members:
                results[case.id] = CaseResult(case, "failed", django_error)
        else:
            usable.append((stack, app, members))
    runs_of: dict[str, list[WrkResult]] = {}
    cpu_of: dict[str, list[CpuUsage]] = {}
    total = sum(len(members) for _stack, _app, members in usable) * args.runs
    done = 0
    for round_number in range(1, args.runs + 1):
        for stack, app, members in usable:
            live = [case for case in members if case.id not in results]  # none failed yet
            if not live:
                continue
            assert runner is not None
            done += _run_deployment(
                env, runner, stack, app, live, results, runs_of, cpu_of, done, total
            )
        if args.runs > 1:
            print(f"bench: round {round_number}/{args.runs} done", file=sys.stderr)
    for _stack, _app, members in usable:
        for case in members:
            if case.id not in results:
                results[case.id] = CaseResult(
                    case, "ok", runs=runs_of[case.id], cpu=cpu_of.get(case.id, [])
                )
    return results


def _run_deployment(
    env: Environment,
    runner: Runner,
    stack: Stack,
    app: App,
    cases: list[Case],
    results: dict[str, CaseResult],
    runs_of: dict[str, list[WrkResult]],
    cpu_of: dict[str, list[CpuUsage]],
    done: int,
    total: int,
) -> int:
    """Start one deployment, run each case once, stop it; how many cases were run."""
    deployment = Deployment(env, stack, app)
    began = time.monotonic()
    try:
        base_url = deployment.start()
        print(
            f"bench: started {stack.label} ({app}) in {time.monotonic() - began:.1f} s",
            file=sys.stderr,
        )
    except StartError as exc:
        deployment.stop()
        for case in cases:
            results[case.id] = CaseResult(case, "failed", f"did not start: {exc}")
        print(f"bench: {stack.name} ({app}) did not start: {exc}", file=sys.stderr)
        return len(cases)
    try:
        for index, case in enumerate(cases, 1):
            outcome = runner.measure_once(case, base_url, deployment.roots())
            if isinstance(outcome, CaseResult):
                outcome.reason += f" [logs: {deployment.logs()[-300:]}]"
                results[case.id] = outcome
                line = _line(outcome)
            else:
                measured, usage = outcome
                runs_of.setdefault(case.id, []).append(measured)
                if usage is not None:
                    cpu_of.setdefault(case.id, []).append(usage)
                line = _line(CaseResult(case, "ok", runs=[measured], cpu=[usage] if usage else []))
            print(f"bench: [{done + index}/{total}] {line}", file=sys.stderr)
    finally:
        deployment.stop()
    return len(cases)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.duration = args.duration or (3 if args.quick else 10)
    if args.runs < 1 or args.duration < 1:
        print("bench: --runs and --duration must be at least 1", file=sys.stderr)
        return 2
    cases = [
        case for case in CASES
        if not args.only or any(fnmatch.fnmatchcase(case.id, glob) for glob in args.only)
    ]  # fmt: skip
    if args.list:
        for case in cases:
            print(f"{case.id}{'' if case.quick else '  (full run only)'}")
        return 0
    if not cases:
        print("bench: no case matches --only", file=sys.stderr)
        return 2

    # A stop (kill, a CI timeout) must go through the finally blocks that stop the
    # servers: each runs in its own session, and would outlive us.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    load_cpus, server_cpus, pinning = _pick_cpus()
    if load_cpus is not None:
        os.sched_setaffinity(0, {int(load_cpus)})
    install = not args.no_install
    wrk_path, wrk_how = wrk.find(install)
    _ensure_package("whitenoise", "whitenoise", install)
    chart_reason = _ensure_package("matplotlib", "matplotlib", install)
    runner = Runner(args, wrk_path, load_cpus) if wrk_path else None

    work = Path(tempfile.mkdtemp(prefix="wsgistack-bench-"))
    try:
        env = Environment(work, server_cpus)
        servers.write_static_files(env)
        results = _run_cases(args, cases, env, runner, wrk_how)
        versions = _versions(env, wrk_path)
    finally:
        if args.keep:
            print(f"bench: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    ordered = [results[case.id] for case in cases]
    targets = report.evaluate_all(TARGETS, ordered)
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count() or 0,
            "kernel": f"{platform.system()} {platform.release()}",
            # Anything else running on the machine skews every figure; say so.
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        },
        "versions": versions,
        "settings": {
            "mode": "quick" if args.quick else "full",
            "runs": args.runs,
            "duration_s": args.duration,
            "warmup": f"{QUICK_WARMUP_REQUESTS} requests or {QUICK_WARMUP_MAX_S} s"
            if args.quick
            else f"wrk {FULL_WARMUP_S} s",
            "wrk_timeout_s": WRK_TIMEOUT_S,
            "pinning": pinning,
            "gthread_threads": GTHREAD_THREADS,
            "only": args.only or [],
        },
        "chart": "missing: " + chart_reason if chart_reason else "ok",
        "elapsed_s": 0.0,
    }
    name = "bench-quick" if args.quick else "bench"
    args.results.mkdir(parents=True, exist_ok=True)
    if chart_reason is None:
        report.write_png(args.results / f"{name}.png", meta, ordered)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    markdown = report.render_markdown(meta, ordered, targets)
    if chart_reason is None:
        markdown += f"\n![requests per second]({name}.png)\n"
    else:
        markdown += f"\nChart not drawn: {chart_reason}\n"
    (args.results / f"{name}.md").write_text(markdown)
    report.write_json(args.results / f"{name}.json", report.to_json(meta, ordered, targets))
    print(markdown)
    if args.quick and meta["elapsed_s"] > QUICK_BUDGET_S:
        print(
            f"bench: WARNING: the quick run exceeded its {QUICK_BUDGET_S} s budget", file=sys.stderr
        )
    print(
        f"bench: {meta['elapsed_s']} s; wrote {args.results}/{name}.md, .json"
        + ("" if chart_reason else ", .png"),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
