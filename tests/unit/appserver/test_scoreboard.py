"""The scoreboard: two clocks per request, and a region a re-executed master can map again."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from appserver import scoreboard as sb
from appserver.scoreboard import Scoreboard


@pytest.fixture
def board() -> Iterator[Scoreboard]:
    board = Scoreboard(workers=2, cores=2)
    yield board
    board.close()


def test_begin_keeps_the_wall_time_given_and_the_monotonic_time_now(board: Scoreboard) -> None:
    core = board.core_slot(1, 1)
    before = time.monotonic()
    core.begin(1_000_000.5, b"GET /slow")
    after = time.monotonic()
    snapshot = board.snapshot(1).cores[1]
    assert snapshot.busy_since == 1_000_000.5  # for stats and logs, as given
    assert before <= snapshot.busy_since_monotonic <= after  # for harakiri
    assert snapshot.request_line == "GET /slow"
    assert board.snapshot(1).cores[0].busy_since_monotonic == 0.0  # other cores untouched


def test_end_clears_both_clocks_and_counts(board: Scoreboard) -> None:
    core = board.core_slot(0, 0)
    core.begin(time.time(), b"GET /")
    core.end(0.25, tx=100, failed=True, static=True)
    snapshot = board.snapshot(0).cores[0]
    assert (snapshot.busy_since, snapshot.busy_since_monotonic) == (0.0, 0.0)
    assert (snapshot.requests, snapshot.exceptions, snapshot.tx, snapshot.static_requests) == (
        1,
        1,
        100,
        1,
    )
    assert snapshot.response_time_total == 0.25


def test_overdue_reads_the_monotonic_clock_not_the_wall_clock(board: Scoreboard) -> None:
    # The wall clock said "an hour ago" when the request began (it was stepped since):
    # harakiri must not care.
    core = board.core_slot(0, 1)
    core.begin(time.time() - 3600, b"GET /fine")
    now = time.monotonic()
    assert board.snapshot(0).overdue(now, limit=30) is None
    found = board.snapshot(0).overdue(now + 31, limit=30)
    assert found is not None
    index, overdue_core = found
    assert index == 1 and overdue_core.request_line == "GET /fine"


def test_an_idle_worker_is_never_overdue(board: Scoreboard) -> None:
    assert board.snapshot(0).overdue(time.monotonic() + 10**6, limit=1) is None


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd is Linux's")
def test_a_board_survives_its_first_mapping_through_its_fd() -> None:
    """What a graceful reload does: the old master's mapping goes with exec, the fd stays."""
    first = Scoreboard(workers=3, cores=2)
    assert first.fd is not None
    first.set_pid(2, 4242)
    first.set_state(2, sb.STOPPING)
    first.core_slot(2, 1).begin(123.0, b"POST /upload")
    fd = os.dup(first.fd)
    first.close()
    second = Scoreboard.attach(fd, workers=3, cores=2)
    try:
        snapshot = second.snapshot(2)
        assert (snapshot.pid, snapshot.state) == (4242, sb.STOPPING)
        assert snapshot.cores[1].request_line == "POST /upload"
        assert snapshot.cores[1].busy_since == 123.0
    finally:
        second.close()


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="memfd is Linux's")
def test_a_forked_writer_is_seen_through_an_attached_board() -> None:
    board = Scoreboard(workers=1, cores=1)
    assert board.fd is not None
    attached = Scoreboard.attach(os.dup(board.fd), workers=1, cores=1)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                board.close_fd()  # what a worker does: keep the mapping, drop the fd
                board.core_slot(0, 0).begin(1.0, b"GET /from-child")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert attached.snapshot(0).cores[0].request_line == "GET /from-child"
    finally:
        attached.close()
        board.close()
