"""The wsgistack/prometheus image on its own: its layout, its health check, its refusals.

``WSGISTACK_PROMETHEUS_IMAGE`` (``make prometheus-image``); a missing image fails.
Each container is named for this run and removed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.topology import DEFAULT_PROMETHEUS_IMAGE, PROMETHEUS_YML

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

CONFIG = "/etc/prometheus/prometheus.yml"


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image() -> str:
    name = os.environ.get("WSGISTACK_PROMETHEUS_IMAGE") or DEFAULT_PROMETHEUS_IMAGE
    found = _docker("image", "inspect", name)
    assert found.returncode == 0, f"image {name} not found: run `make prometheus-image` first"
    return name


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"wsgistack-promimage-{uuid.uuid4().hex[:8]}"
    yield name
    _docker("rm", "-f", "-v", name)


def _health(name: str) -> dict[str, object]:
    result = _docker("inspect", "-f", "{{json .State.Health}}", name)
    assert result.returncode == 0, result.stderr
    health: dict[str, object] = json.loads(result.stdout)
    return health


def test_the_compose_config_runs_healthy_as_nobody(image: str, container_name: str) -> None:
    started = _docker(
        "run", "-d", "--name", container_name,
        # The image's probe, run every second instead of every 15 s.
        "--health-interval=1s", "--health-start-period=30s",
        "-v", f"{PROMETHEUS_YML}:{CONFIG}:ro",
        image,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 60
    while (health := _health(container_name))["Status"] != "healthy":
        assert health["Status"] != "unhealthy", health
        assert time.monotonic() < deadline, f"not healthy in 60 s: {health}"
        time.sleep(0.5)
    assert _docker("exec", container_name, "id", "-u").stdout.strip() == "65534"
    check = _docker("exec", container_name, "promtool", "check", "config", CONFIG)
    assert check.returncode == 0, check.stdout + check.stderr
    # The TSDB is where the official image has it, and it is this user's.
    tsdb = _docker("exec", container_name, "sh", "-c", "ls /prometheus && touch /prometheus/x")
    assert tsdb.returncode == 0 and "wal" in tsdb.stdout, tsdb.stdout + tsdb.stderr


def test_the_probe_says_what_is_wrong(image: str, container_name: str) -> None:
    # Nothing listens on port 1: the probe fails with one line saying so.
    probe = _docker(
        "run", "--rm", "--name", container_name, "-e", "PROMETHEUS_HEALTHCHECK_PORT=1",
        "--entrypoint", "prometheus-healthcheck", image,
    )  # fmt: skip
    assert probe.returncode == 1, probe
    assert probe.stdout.strip() == "prometheus-healthcheck: nothing listens on 127.0.0.1:1", probe
    assert probe.stderr == "", probe.stderr


def test_a_bad_config_stops_it_with_the_file_named(
    image: str, container_name: str, tmp_path: Path
) -> None:
    bad = tmp_path / "prometheus.yml"
    bad.write_text("scrape_configs:\n  - job_name: edge\n    scrape_interval: soon\n")
    bad.chmod(0o644)
    run = _docker("run", "--name", container_name, "-v", f"{bad}:{CONFIG}:ro", image, timeout=60)
    assert run.returncode != 0, run
    logs = run.stdout + run.stderr
    assert "Error loading config" in logs and CONFIG in logs and "soon" in logs, logs
