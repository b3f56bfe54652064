"""A real Prometheus for integration tests: the host's Debian ``prometheus`` binary.

``start_prometheus(workdir, {"edge": ["127.0.0.2:41234"]})`` writes a
configuration with one static scrape job per name, starts
``prometheus --web.listen-address=127.0.0.1:0`` with its TSDB under
``workdir``, reads the bound port back from its log (``msg="Listening on"
address=127.0.0.1:PORT``) and waits until ``/-/ready`` answers 200.  Tests
then ask it what a user's dashboard would: ``query("sum(edge_http_requests_total)")``
through ``/api/v1/query``, and ``wait_for(...)`` polls a query until a
condition holds, with a deadline, because a scrape happens on Prometheus's
clock, not the test's.

``PrometheusAPI(port)`` is the same client for a Prometheus the test did not
start (the compose stack's, ``Topology.prometheus()``).

Scrapes come every ``scrape_interval`` (1 s by default: the smallest interval
that keeps ``rate(...[10s])`` meaningful in a test).  The process stops with
SIGTERM, Prometheus's clean stop, when ``stop()`` is called or the ``with``
block ends.  Everything goes to 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import ServerProcess, wait_until

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
LISTENING = r'msg="Listening on" address=127\.0\.0\.1:(\d+)'
READY_TIMEOUT = 30.0  # the TSDB opens in well under a second here


class PrometheusError(AssertionError):
    """Prometheus refused a query, or could not be reached; the message says which."""


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector: its labels and its value."""

    labels: dict[str, str]
    value: float

    @property
    def name(self) -> str:
        return self.labels.get("__name__", "")


def static_job(
    name: str, targets: Iterable[str], *, metrics_path: str = "/metrics"
) -> dict[str, Any]:
    """A ``scrape_configs`` entry scraping ``targets`` (``HOST:PORT``) as job ``name``."""
    return {
        "job_name": name,
        "metrics_path": metrics_path,
        "static_configs": [{"targets": list(targets)}],
    }


def config_text(
    jobs: Mapping[str, Iterable[str]] | Iterable[dict[str, Any]],
    *,
    scrape_interval: str = "1s",
) -> str:
    """prometheus.yml: ``jobs`` as {job: [targets]} (static) or whole scrape_configs entries."""
    if isinstance(jobs, Mapping):
        scrape_configs = [static_job(name, targets) for name, targets in jobs.items()]
    else:
        scrape_configs = list(jobs)
    document = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": scrape_configs,
    }
    text: str = yaml.safe_dump(document, sort_keys=False)
    return text


class PrometheusAPI:
    """Prometheus's HTTP API on 127.0.0.1:``port``: a test's own process, or compose's."""

    def __init__(self, port: int, process: ServerProcess | None = None) -> None:
        self.port = port
        # When set, a wait fails at once (with its log) if that process has exited.
        self.process = process

    def ready(self) -> bool:
        return self._get("/-/ready")[0] == 200

    def _get(self, target: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", target, headers={"Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            return 0, f"{type(exc).__name__}: {exc}".encode()
        finally:
            conn.close()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH?params; the ``data`` member of a successful answer."""
        target = f"/api/v1/{path}"
        if params:
            target += "?" + urllib.parse.urlencode(params)
        status, body = self._get(target)
        try:
            document = json.loads(body)
        except ValueError:
            raise PrometheusError(f"GET {target}: HTTP {status}: {body[:300]!r}") from None
        if status != 200 or document.get("status") != "success":
            raise PrometheusError(
                f"GET {target}: HTTP {status}: {document.get('errorType')}: {document.get('error')}"
            )
        return document["data"]

    def query(self, expr: str) -> list[Sample]:
        """An instant query now; a scalar answer comes back as one sample with no labels."""
        data = self.api("query", query=expr)
        if data["resultType"] == "vector":
            return [Sample(item["metric"], float(item["value"][1])) for item in data["result"]]
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        raise PrometheusError(f"{expr}: a {data['resultType']} result, not an instant vector")

    def value(self, expr: str) -> float | None:
        """The value of a query that gives one sample (``sum(...)``), None when it gives none."""
        samples = self.query(expr)
        if not samples:
            return None
        if len(samples) > 1:
            raise PrometheusError(f"{expr}: {len(samples)} samples, expected one: {samples}")
        return samples[0].value

    def wait_for(
        self,
        expr: str,
        condition: Callable[[list[Sample]], bool],
        *,
        timeout: float = 30.0,
        what: str = "",
    ) -> list[Sample]:
        """Poll ``expr`` until ``condition(samples)`` holds; fail with the last answer after ``timeout``."""
        last: list[Sample] = []

        def check() -> tuple[list[Sample]] | None:
            nonlocal last
            last = self.query(expr)
            # A tuple, so that an empty answer that satisfies ``condition`` is still "true".
            return (last,) if condition(last) else None

        try:
            return wait_until(
                check, timeout=timeout, what=what or expr, process=self.process, interval=0.25
            )[0]
        except AssertionError as exc:
            raise PrometheusError(
                f"{exc}\nlast answer to {expr!r}: {last}\ntargets: {self.describe_targets()}"
            ) from None

    def targets(self) -> list[dict[str, Any]]:
        """The active targets (/api/v1/targets): labels, health, lastError."""
        targets: list[dict[str, Any]] = self.api("targets", state="active")["activeTargets"]
        return targets

    def describe_targets(self) -> str:
        try:
            targets = self.targets()
        except PrometheusError as exc:
            return str(exc)
        return "; ".join(
            f"{t['labels'].get('job')} {t['scrapeUrl']} {t['health']} {t['lastError']}".strip()
            for t in targets
        )


class PrometheusProcess(ServerProcess, PrometheusAPI):
    """``prometheus`` on 127.0.0.1:0 with a configuration and a TSDB of its own."""

    def __init__(self, workdir: Path, config: str, *, listen: str = "127.0.0.1:0") -> None:
        self.workdir = workdir
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config)
        super().__init__(
            [
                PROMETHEUS,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address={listen}",
                # SIGHUP reloads; no /-/reload or admin endpoints are needed.
                "--log.level=info",
            ],
            cwd=workdir,
            log_path=workdir / "prometheus.log",
        )
        PrometheusAPI.__init__(self, 0, self)

    def __enter__(self) -> PrometheusProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> PrometheusProcess:
        super().start()
        self.port = int(self.wait_for_log(LISTENING, timeout=READY_TIMEOUT).group(1))
        wait_until(
            self.ready,
            timeout=READY_TIMEOUT,
            what="prometheus /-/ready",
            process=self,
        )
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def start_prometheus(
    workdir: Path,
    jobs: Mapping[str, Iterable[str]] | Iterable[dict[str, Any]],
    *,
    scrape_interval: str = "1s",
) -> PrometheusProcess:
    """Start the host's prometheus scraping ``jobs``; ready when this returns (see the module doc)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return PrometheusProcess(workdir, config_text(jobs, scrape_interval=scrape_interval)).start()
