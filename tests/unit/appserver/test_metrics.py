"""appserver's metrics: the retained totals, the duration histogram, the exposition, the JSON.

Real shared memory (a memfd, mapped twice as a re-executed master maps it),
real ``promtool`` on the text; no master: ``Reading`` is plain data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from appserver import scoreboard as sb
from appserver.metrics import FAMILIES, ProcessReading, Reading, prometheus_text, status_document
from appserver.scoreboard import Retained, Scoreboard, WorkerTotals
from appserver.stats import SocketStats
from promtext import BUCKETS, HISTOGRAM_CELLS

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@pytest.fixture
def board() -> Iterator[Scoreboard]:
    board = Scoreboard(workers=4, cores=2)
    yield board
    board.close()


@pytest.fixture
def retained() -> Iterator[Retained]:
    totals = Retained(2)
    yield totals
    totals.close()


def _serve(
    board: Scoreboard, slot: int, core: int, durations: list[float], failed: int = 0
) -> None:
    handle = board.core_slot(slot, core, histogram=True)
    for index, seconds in enumerate(durations):
        handle.begin(time.time(), b"GET /x")
        handle.end(seconds, tx=10, failed=index < failed)
    handle.close()


def test_a_core_counts_durations_in_prometheus_buckets(board: Scoreboard) -> None:
    _serve(board, 0, 1, [0.001, 0.005, 0.0051, 0.3, 20.0])
    histogram = board.snapshot(0).cores[1].histogram
    assert len(histogram) == HISTOGRAM_CELLS
    assert histogram[BUCKETS.index(0.005)] == 2  # <= 5 ms: 1 ms and exactly 5 ms
    assert histogram[BUCKETS.index(0.01)] == 1
    assert histogram[BUCKETS.index(0.5)] == 1
    assert histogram[len(BUCKETS)] == 1  # +Inf
    assert histogram[-1] == 1_000 + 5_000 + 5_100 + 300_000 + 20_000_000  # microseconds


def test_without_metrics_the_histogram_stays_empty(board: Scoreboard) -> None:
    handle = board.core_slot(0, 0)
    handle.begin(time.time(), b"GET /")
    handle.end(0.1, tx=1, failed=False)
    core = board.snapshot(0).cores[0]
    assert core.requests == 1 and not any(core.histogram)


def test_fold_keeps_a_dead_worker_s_counts_by_worker_id(
    board: Scoreboard, retained: Retained
) -> None:
    _serve(board, 0, 0, [0.01] * 3, failed=1)
    _serve(board, 0, 1, [0.2] * 2)
    retained.fold(2, board.snapshot(0).cores)
    board.reset_worker(0, 0, 1, 0)  # the slot goes to the next worker, counts zeroed
    _serve(board, 0, 0, [0.01])
    retained.fold(2, board.snapshot(0).cores)
    totals = retained.totals(2)
    assert (totals.requests, totals.exceptions) == (6, 1)
    assert sum(totals.histogram[:-1]) == 6
    assert retained.worker_ids() == [2]
    assert retained.totals(1).requests == 0


def test_a_re_executed_master_maps_the_same_totals(retained: Retained) -> None:
    retained.add(1, sb.RESPAWNS)
    retained.add(1, sb.HARAKIRI, 2)
    retained.reloaded(1_800_000_000.25)
    assert retained.fd is not None
    again = Retained.attach(os.dup(retained.fd), 2)
    try:
        assert again.capacity == retained.capacity
        assert (again.totals(1).respawns, again.totals(1).harakiri) == (1, 2)
        assert again.reloads == 1 and again.last_reload == 1_800_000_000.25
        again.add(1, sb.RESPAWNS)  # the same cells, not a copy
        assert retained.totals(1).respawns == 2
    finally:
        again.close()


def test_more_worker_ids_after_a_reload_grow_the_totals(retained: Retained) -> None:
    retained.add(2, sb.RESPAWNS)
    assert retained.fd is not None
    bigger = Retained.attach(os.dup(retained.fd), retained.capacity + 10)
    try:
        assert bigger.capacity == retained.capacity + 10
        assert bigger.totals(2).respawns == 1
        bigger.add(retained.capacity + 10, sb.RESPAWNS)
        assert bigger.totals(retained.capacity + 10).respawns == 1
    finally:
        bigger.close()


def test_worker_ids_outside_the_capacity_are_ignored_not_written_elsewhere(
    retained: Retained,
) -> None:
    retained.add(0, sb.RESPAWNS)
    retained.add(retained.capacity + 1, sb.RESPAWNS)
    assert retained.worker_ids() == []


# -- rendering ------------------------------------------------------------------------------


def _reading(board: Scoreboard, *, retained: dict[int, WorkerTotals] | None = None) -> Reading:
    board.reset_worker(0, 101, 0, 0)
    board.set_state(0, sb.READY)
    board.reset_worker(1, 102, 0, 0)
    board.set_state(1, sb.READY)
    board.reset_worker(2, 90, 0, 0)  # worker 1 of the generation before a reload
    board.set_state(2, sb.READY)
    _serve(board, 0, 0, [0.02, 0.02], failed=1)
    _serve(board, 1, 0, [0.3])
    _serve(board, 2, 1, [0.001] * 4)
    busy = board.core_slot(1, 1)
    busy.begin(time.time() - 2.5, b'GET /slow?"quoted"')
    processes = (
        ProcessReading(1, 101, False, False, board.snapshot(0), 10_000_000, 50_000_000),
        ProcessReading(2, 102, False, False, board.snapshot(1), 20_000_000, 60_000_000),
        ProcessReading(1, 90, True, True, board.snapshot(2), 5_000_000, 40_000_000),
    )
    histogram = [0] * HISTOGRAM_CELLS
    histogram[0], histogram[-1] = 7, 7_000
    return Reading(
        time=time.time(),
        master_pid=100,
        processes=processes,
        retained=retained
        if retained is not None
        else {1: WorkerTotals(7, 2, 1, 3, tuple(histogram))},
        sockets=(
            SocketStats("127.0.0.1:3031", "uwsgi", 3, 1024),
            SocketStats('/run/a "b".sock', "http", 0, 100),
        ),
        reloads=1,
        last_reload=1_800_000_000.5,
        worker_ids=(1, 2),
    )


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)", line)
        assert match, line
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if match.group(1) == name and found == labels:
            return float(match.group(3))
    raise AssertionError(f"{name}{labels} not in:\n{text}")


def test_counters_add_retained_live_and_old_generation(board: Scoreboard) -> None:
    text = prometheus_text(_reading(board)).decode()
    # worker 1: 7 retained + 2 live + 4 of the old generation's worker 1
    assert sample(text, "appserver_requests_total", worker="1") == 13
    assert sample(text, "appserver_requests_total", worker="2") == 1
    assert sample(text, "appserver_exceptions_total", worker="1") == 3
    assert sample(text, "appserver_worker_respawns_total", worker="1") == 3
    assert sample(text, "appserver_harakiri_total", worker="1") == 1
    assert sample(text, "appserver_harakiri_total", worker="2") == 0
    assert sample(text, "appserver_request_duration_seconds_count") == 14
    assert sample(text, "appserver_request_duration_seconds_bucket", le="0.005") == 7 + 4
    assert sample(text, "appserver_request_duration_seconds_bucket", le="0.025") == 13
    assert sample(text, "appserver_request_duration_seconds_bucket", le="+Inf") == 14
    assert sample(text, "appserver_request_duration_seconds_sum") == pytest.approx(
        0.007 + 0.04 + 0.3 + 0.004
    )


def test_gauges_are_the_live_processes(board: Scoreboard) -> None:
    text = prometheus_text(_reading(board)).decode()
    assert sample(text, "appserver_busy_threads", worker="2") == 1
    assert sample(text, "appserver_idle_threads", worker="2") == 1
    assert sample(text, "appserver_busy_threads", worker="1") == 0
    assert sample(text, "appserver_idle_threads", worker="1") == 2  # the old one accepts nothing
    assert sample(text, "appserver_worker_rss_bytes", worker="1") == 15_000_000
    assert sample(text, "appserver_workers") == 3
    assert sample(text, "appserver_listen_queue", listener="127.0.0.1:3031", proto="uwsgi") == 3
    assert (
        sample(text, "appserver_listen_queue_max", listener="127.0.0.1:3031", proto="uwsgi") == 1024
    )
    assert '{listener="/run/a \\"b\\".sock",proto="http"} 0' in text  # escaped
    assert sample(text, "appserver_config_reloads_total") == 1
    assert sample(text, "appserver_config_last_reload_success_timestamp_seconds") == 1_800_000_000.5


def test_configured_workers_have_series_before_they_count(board: Scoreboard) -> None:
    reading = Reading(time.time(), 1, (), {}, (), worker_ids=(1, 2, 3))
    text = prometheus_text(reading).decode()
    assert sample(text, "appserver_requests_total", worker="3") == 0
    assert "appserver_busy_threads" not in text  # no live process: no gauge


def test_every_family_has_help_and_type_and_promtool_accepts_it(board: Scoreboard) -> None:
    text = prometheus_text(_reading(board)).decode()
    for family in FAMILIES:
        assert f"# HELP {family.name} " in text and f"# TYPE {family.name} {family.kind}" in text
        assert family.name.startswith("appserver_")
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_status_document_lists_processes_and_requests_in_flight(board: Scoreboard) -> None:
    document = status_document(_reading(board))
    assert document["requests_total"] == 14
    assert document["exceptions_total"] == 3
    assert [(w["id"], w["pid"], w["generation"]) for w in document["workers"]] == [
        (1, 101, "current"),
        (2, 102, "current"),
        (1, 90, "old"),
    ]
    second = document["workers"][1]
    assert (second["status"], second["busy"], second["idle"], second["threads"]) == (
        "busy",
        1,
        1,
        2,
    )
    assert document["workers"][2]["status"] == "sig"
    (busy,) = document["busy_requests"]
    assert busy["request"] == 'GET /slow?"quoted"' and busy["worker"] == 2 and busy["core"] == 1
    assert 2.4 < busy["elapsed"] < 10
    assert document["listeners"][0] == {
        "name": "127.0.0.1:3031",
        "proto": "uwsgi",
        "queue": 3,
        "max_queue": 1024,
    }
