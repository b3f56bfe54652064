"""Find, run and parse wrk (the Debian package ``wrk``, 4.x).

``parse`` is pure: it turns wrk's text report (run with ``--latency``) into a
``WrkResult``.  wrk prints times as ``us``/``ms``/``s``/``m``/``h`` and the
error lines only when a count is non-zero, so absent lines mean zero.  wrk's
"Non-2xx or 3xx responses" counts statuses >= 400; the harness checks each
endpoint for a 200 before timing it, so a redirect cannot pass unnoticed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([0-9.]+)(us|ms|s|m|h)"
_REQUESTS = re.compile(r"^\s*(\d+) requests in " + _TIME, re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([0-9.]+)", re.MULTILINE)
_LATENCY = re.compile(r"^\s*Latency\s+" + _TIME + r"\s+" + _TIME + r"\s+" + _TIME, re.MULTILINE)
_PERCENTILE = re.compile(r"^\s*(50|75|90|99)%\s+" + _TIME, re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


class WrkError(Exception):
    """wrk could not run, or its output is not a report."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    requests_per_s: float
    latency_avg_ms: float
    latency_max_ms: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeout_errors: int = 0
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeout_errors
            + self.non_2xx
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["errors"] = self.errors
        return data


def _ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS_MS[unit]


def parse(text: str) -> WrkResult:
    """Parse the report ``wrk --latency`` prints on stdout."""
    requests = _REQUESTS.search(text)
    rps = _RPS.search(text)
    if requests is None or rps is None:
        raise WrkError(f"not a wrk report: {text.strip()[:300]!r}")
    percentiles = {int(m[1]): _ms(m[2], m[3]) for m in _PERCENTILE.finditer(text)}
    if 50 not in percentiles or 99 not in percentiles:
        raise WrkError("wrk report has no latency distribution (run wrk with --latency)")
    latency = _LATENCY.search(text)
    errors = _SOCKET_ERRORS.search(text)
    non_2xx = _NON_2XX.search(text)
    connect, read, write, timeout = (int(n) for n in errors.groups()) if errors else (0, 0, 0, 0)
    return WrkResult(
        requests=int(requests[1]),
        duration_s=_ms(requests[2], requests[3]) / 1000.0,
        requests_per_s=float(rps[1]),
        latency_avg_ms=_ms(latency[1], latency[2]) if latency else 0.0,
        latency_max_ms=_ms(latency[5], latency[6]) if latency else 0.0,
        p50_ms=percentiles[50],
        p75_ms=percentiles.get(75, percentiles[50]),
        p90_ms=percentiles.get(90, percentiles[99]),
        p99_ms=percentiles[99],
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeout_errors=timeout,
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
    )


def command(
    url: str,
    *,
    connections: int,
    duration_s: int,
    timeout_s: int,
    cpus: str | None,
    wrk: str = "wrk",
) -> list[str]:
    """wrk with one thread (one core of load), pinned to ``cpus`` when given."""
    argv = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={timeout_s}s",
        "--latency",
        url,
    ]
    taskset = shutil.which("taskset")
    if cpus is not None and taskset:
        return [taskset, "-c", cpus, *argv]
    return argv


def run(argv: list[str], duration_s: int) -> WrkResult:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration_s + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WrkError(f"wrk did not finish within {duration_s + 30}s") from exc
    if done.returncode != 0:
        raise WrkError(
            f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[:300]}"
        )
    return parse(done.stdout)


def find(install: bool) -> tuple[str | None, str]:
    """Return (path to wrk or None, how it was found or why it is missing)."""
    path = shutil.which("wrk")
    if path:
        return path, "found"
    if not install:
        return None, "wrk is not installed (apt-get install wrk); --no-install given"
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None, "wrk is not installed; run `apt-get install wrk` as root"
    for argv in ([apt, "install", "-y", "wrk"], [apt, "update"], [apt, "install", "-y", "wrk"]):
        subprocess.run(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            check=False,
            timeout=600,
        )
        path = shutil.which("wrk")
        if path:
            return path, "installed with apt-get"
    return None, "wrk is not installed and `apt-get install -y wrk` failed"
