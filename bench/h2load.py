"""Find, run and parse h2load (Debian's ``nghttp2-client``) for the TLS + HTTP/2 cases.

h2load prints throughput and a min/max/mean of request times, but no
percentiles; with ``--log-file`` it writes one line per request (start time,
status, response time in microseconds), which is where ``parse`` takes the
latency distribution from.  The result is a ``WrkResult``, so the report reads
h2load's cases exactly as wrk's.  ``parse`` is pure.

Errors: h2load's "failed" and "errored" requests (connection-level failures,
resets) plus every response that is not 2xx or 3xx.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from bench.wrk import WrkError, WrkResult

_FINISHED = re.compile(r"^finished in ([0-9.]+)(us|ms|s), ([0-9.]+) req/s", re.MULTILINE)
_REQUESTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.MULTILINE,
)
_STATUS = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _percentile(ordered: list[float], fraction: float) -> float:
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def parse(text: str, log: str) -> WrkResult:
    """h2load's report (stdout) and its ``--log-file`` (one request per line)."""
    finished = _FINISHED.search(text)
    requests = _REQUESTS.search(text)
    status = _STATUS.search(text)
    if finished is None or requests is None or status is None:
        raise WrkError(f"not an h2load report: {text.strip()[:300]!r}")
    times_ms = sorted(
        int(fields[2]) / 1000.0
        for fields in (line.split("\t") for line in log.splitlines())
        if len(fields) >= 3 and fields[2].strip().isdigit()
    )
    if not times_ms:
        raise WrkError("h2load logged no request (is --log-file given?)")
    done = int(requests[3])
    rps = float(finished[3])
    failed, errored, timeout = int(requests[5]), int(requests[6]), int(requests[7])
    client_errors, server_errors = int(status[3]), int(status[4])
    return WrkResult(
        requests=done,
        # "finished in" includes the warm-up; req/s is over the timed part only.
        duration_s=done / rps if rps else float(finished[1]) * _SECONDS[finished[2]],
        requests_per_s=rps,
        latency_avg_ms=sum(times_ms) / len(times_ms),
        latency_max_ms=times_ms[-1],
        p50_ms=_percentile(times_ms, 0.50),
        p75_ms=_percentile(times_ms, 0.75),
        p90_ms=_percentile(times_ms, 0.90),
        p99_ms=_percentile(times_ms, 0.99),
        read_errors=failed + errored,
        timeout_errors=timeout,
        non_2xx=client_errors + server_errors,
    )


def command(
    url: str,
    *,
    clients: int,
    streams: int,
    duration_s: int,
    warm_up_s: int,
    log: Path,
    cpus: str | None,
    h2load: str = "h2load",
) -> list[str]:
    """h2load with one thread (one core of load): ``warm_up_s`` untimed, then ``duration_s``
    timed, pinned to ``cpus``."""
    argv = [
        h2load,
        "-t1",
        f"-c{clients}",
        f"-m{streams}",
        f"-D{duration_s}",
        f"--warm-up-time={warm_up_s}",
        f"--log-file={log}",
        url,
    ]
    taskset = shutil.which("taskset")
    if cpus is not None and taskset:
        return [taskset, "-c", cpus, *argv]
    return argv


def run(argv: list[str], seconds: int, log: Path) -> WrkResult:
    """Run ``argv`` (``seconds``: its warm-up and timed duration together)."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"h2load did not finish within {seconds + 30}s") from exc
    if done.returncode != 0:
        raise WrkError(
            f"h2load exited {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}"
        )
    try:
        text = log.read_text()
    except OSError as exc:
        raise WrkError(f"h2load wrote no log: {exc}") from None
    return parse(done.stdout, text)


def find() -> str | None:
    return shutil.which("h2load")
