"""The stack fixture: the whole topology up once, down after the last test here.

It is package-scoped: one stack for the whole run, like a session fixture, but
torn down as soon as this directory's tests are done, so the containers do not
keep running (and taking CPU) while the rest of the suite runs.

``WSGISTACK_TOPOLOGY=compose`` (default) runs compose.yaml's containers under a
unique project name; ``local`` runs the same processes on loopback without
Docker (tests/support/topology.py).  A stack that does not come up fails the
tests that need it, with every service's log in the message: a missing Docker
engine or image is a failure, never a skip.  When a test fails, the tail of
the stack's logs is attached to its report, and the whole log is written to
``build/topology-logs/`` at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import REPO
from tests.support.topology import (
    DJANGO,
    GUNICORN,
    Load,
    Topology,
    TopologyError,
    failures,
    summary,
    topology_from_env,
)

LOG_DIR = REPO / "build" / "topology-logs"
IN_FLIGHT = "/slow?ms=2000"  # requests that are running when `down` starts
REPORT_TAIL = 40  # lines of each service's log attached to a failed test
# Modules whose tests scale, stop or reload (and put the stack back): run last.
CHANGE_THE_STACK = {"test_operations.py", "test_monitoring.py"}


def _say(config: pytest.Config, line: str) -> None:
    """One line on the terminal, now (fixture output is captured otherwise)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="package")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    # With the `monitoring` profile: test_monitoring.py queries its Prometheus.
    topology = topology_from_env(tmp_path_factory.mktemp("topology"), monitoring=True)
    started = time.monotonic()
    try:
        topology.up()
    except TopologyError as exc:
        try:
            topology.down()
        finally:
            pytest.fail(f"the {topology.mode} stack did not come up: {exc}", pytrace=False)
    _say(
        request.config,
        f"\ntopology: {topology.mode} stack up in {time.monotonic() - started:.1f} s, "
        f"ports {topology.ports}",
    )
    for note in topology.notes:
        _say(request.config, f"topology: {note}")
    failed_before = request.session.testsfailed
    yield topology
    if request.session.testsfailed > failed_before:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        path = LOG_DIR / f"{topology.mode}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        path.write_text(topology.logs())
        _say(request.config, f"topology: tests failed; the stack's logs are in {path}")
    # `down` is graceful: requests in flight through both backends finish.
    in_flight = Load(
        [(topology.ports[DJANGO], IN_FLIGHT), (topology.ports[GUNICORN], IN_FLIGHT)],
        concurrency=2,
        max_requests=2,
        timeout=60,
    )
    with in_flight:
        time.sleep(0.5)
        stopped = time.monotonic()
        topology.down()
    outcomes = in_flight.stop()
    _say(
        request.config,
        f"topology: {topology.mode} stack down in {time.monotonic() - stopped:.1f} s",
    )
    assert len(outcomes) == 2 and not failures(outcomes), (
        f"`down` cut requests in flight: {summary(outcomes)}"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when != "call" or not report.failed:
        return
    topology = getattr(item, "funcargs", {}).get("stack")
    if isinstance(topology, Topology):
        try:
            logs = topology.logs(REPORT_TAIL)
        except (OSError, TopologyError) as exc:
            logs = f"(could not read the logs: {exc})"
        report.sections.append((f"stack logs (last {REPORT_TAIL} lines of each)", logs))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The tests that change the stack (stop, scale, reload) run after the
    # read-only ones here, so a failure to restore cannot disturb those.  Only
    # this directory's block of items is reordered, in place.
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if Path(str(item.path)).parent == here]
    ours = [items[i] for i in slots]
    ours.sort(key=lambda item: Path(str(item.path)).name in CHANGE_THE_STACK)
    for i, item in zip(slots, ours, strict=True):
        items[i] = item
