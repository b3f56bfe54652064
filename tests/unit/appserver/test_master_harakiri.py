"""The master's harakiri decision, against real processes and a real scoreboard.

A wall-clock step cannot be made on a shared machine, so the tests make its
effect: the wall time handed to ``CoreSlot.begin`` is an hour off (the clock
stepped while the request ran), and the master's monotonic clock
(``Arbiter.clock``, the seam) is moved forward where a request must look
stuck.  Each victim is a real sleeping process that harakiri must or must
not SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from appserver.config import AppServerConfig
from appserver.master import (
    Arbiter,
    OldWorker,
    WorkerProcess,
    export_workers,
    import_workers,
)
from appserver.scoreboard import Scoreboard


def _no_reload(argv: object, *, cwd: str | None = None) -> tuple[AppServerConfig, list[str]]:
    raise AssertionError("no reload in these tests")


@pytest.fixture
def victims() -> Iterator[Callable[[], int]]:
    """Start sleeping processes (children of this one); all killed and reaped afterwards."""
    pids: list[int] = []

    def start() -> int:
        pid = os.fork()
        if pid == 0:
            try:
                os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(60)"])
            finally:
                os._exit(127)
        pids.append(pid)
        return pid

    yield start
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass


@pytest.fixture
def make_arbiter() -> Iterator[Callable[..., Arbiter]]:
    made: list[Arbiter] = []

    def make(harakiri: int, old_workers: dict[int, OldWorker] | None = None) -> Arbiter:
        config = AppServerConfig(sockets=("127.0.0.1:0",), module="app", harakiri=harakiri)
        arbiter = Arbiter(config, [], None, _no_reload, old_workers=old_workers or {})
        made.append(arbiter)
        return arbiter

    yield make
    for arbiter in made:
        arbiter.supervisor.close()
        arbiter.board.close()


def _busy_worker(arbiter: Arbiter, pid: int, wall_started: float) -> WorkerProcess:
    process = WorkerProcess(worker_id=1, slot=0, pid=pid, spawned_at=time.monotonic(), ready=True)
    arbiter.workers[pid] = process
    arbiter.board.set_pid(0, pid)
    arbiter.board.core_slot(0, 0).begin(wall_started, b"GET /report")
    return process


def _killed(pid: int, timeout: float = 10.0) -> bool:
    """Whether ``pid`` dies of SIGKILL within ``timeout`` (reaping it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        time.sleep(0.02)
    return False


def _alive(pid: int) -> bool:
    return os.waitpid(pid, os.WNOHANG) == (0, 0)


def test_a_wall_clock_step_forward_kills_nobody(
    victims: Callable[[], int],
    make_arbiter: Callable[..., Arbiter],
    capfd: pytest.CaptureFixture[str],
) -> None:
    arbiter = make_arbiter(harakiri=30)
    pid = victims()
    # The request began a moment ago, but the wall clock has since jumped an hour ahead.
    process = _busy_worker(arbiter, pid, wall_started=time.time() - 3600)
    arbiter._check_harakiri()
    assert process.killed_for is None
    assert _alive(pid)
    assert "HARAKIRI" not in capfd.readouterr().err


def test_a_wall_clock_step_back_does_not_spare_a_stuck_request(
    victims: Callable[[], int],
    make_arbiter: Callable[..., Arbiter],
    capfd: pytest.CaptureFixture[str],
) -> None:
    arbiter = make_arbiter(harakiri=30)
    pid = victims()
    # The wall clock went back an hour after the request began...
    process = _busy_worker(arbiter, pid, wall_started=time.time() + 3600)
    # ...and the request has been stuck for 31 s of real (monotonic) time.
    arbiter.clock = lambda: time.monotonic() + 31
    arbiter._check_harakiri()
    assert process.killed_for == "harakiri"
    assert _killed(pid)
    err = capfd.readouterr().err
    assert f"HARAKIRI ON WORKER 1 (pid: {pid}, core: 0): GET /report has run for 31" in err
    assert "> harakiri 30s; killing it" in err
    assert arbiter.harakiri_counts == {1: 1}


def test_a_request_within_the_limit_is_left_alone(
    victims: Callable[[], int], make_arbiter: Callable[..., Arbiter]
) -> None:
    arbiter = make_arbiter(harakiri=30)
    pid = victims()
    process = _busy_worker(arbiter, pid, wall_started=time.time())
    arbiter.clock = lambda: time.monotonic() + 29
    arbiter._check_harakiri()
    assert process.killed_for is None and _alive(pid)


def _old_generation(pid: int, harakiri: int) -> dict[int, OldWorker]:
    """What a re-executed master inherits: the old board through its fd, and the old worker."""
    old_board = Scoreboard(workers=2, cores=2)
    old_board.set_pid(1, pid)
    old_board.core_slot(1, 1).begin(time.time() + 3600, b"GET /export")
    workers_spec, boards_spec, fds = export_workers(old_board, harakiri, [(pid, 2, 1)], [])
    assert fds == [old_board.fd]
    # exec: the old master's mapping is gone, the descriptor survives.
    old_board.memory.close()
    old_board.fd = None
    return import_workers(workers_spec, boards_spec)


def test_the_old_generation_keeps_its_harakiri_after_a_reload(
    victims: Callable[[], int],
    make_arbiter: Callable[..., Arbiter],
    capfd: pytest.CaptureFixture[str],
) -> None:
    pid = victims()
    old_workers = _old_generation(pid, harakiri=5)
    assert old_workers[pid].worker_id == 2 and old_workers[pid].slot == 1
    # The new config has no harakiri: the old workers keep the limit they started with.
    arbiter = make_arbiter(harakiri=0, old_workers=old_workers)
    arbiter._check_harakiri()
    assert _alive(pid)
    arbiter.clock = lambda: time.monotonic() + 6
    arbiter._check_harakiri()
    assert old_workers[pid].killed_for == "harakiri"
    deadline = time.monotonic() + 10
    while arbiter.old_workers and time.monotonic() < deadline:
        arbiter._reap()
        time.sleep(0.02)
    assert arbiter.old_workers == {}
    err = capfd.readouterr().err
    assert (
        f"HARAKIRI ON WORKER 2 (pid: {pid}, core: 1, old generation): GET /export has run for 6"
        in err
    )
    assert f"old worker (pid: {pid}) was killed by signal 9 (SIGKILL) (harakiri)" in err


def test_a_slot_reused_by_another_pid_is_not_the_old_worker(
    victims: Callable[[], int], make_arbiter: Callable[..., Arbiter]
) -> None:
    pid = victims()
    old_workers = _old_generation(pid, harakiri=5)
    inherited = old_workers[pid].board
    assert inherited is not None
    inherited.board.set_pid(1, pid + 100000)
    arbiter = make_arbiter(harakiri=0, old_workers=old_workers)
    arbiter.clock = lambda: time.monotonic() + 60
    arbiter._check_harakiri()
    assert old_workers[pid].killed_for is None and _alive(pid)
    inherited.board.close()


def test_the_hand_over_round_trips_every_generation() -> None:
    older = Scoreboard(workers=2, cores=1)
    current = Scoreboard(workers=4, cores=3)
    try:
        already_old = import_workers(*export_workers(older, 7, [(11, 1, 0)], [])[:2])
        # import_workers mapped ``older`` again through the same fd: forget the first mapping.
        older.memory.close()
        older.fd = None
        workers_spec, boards_spec, fds = export_workers(
            current, 3, [(21, 1, 2), (22, 2, 3)], already_old.values()
        )
        assert len(fds) == 2
        current.memory.close()
        current.fd = None
        old = import_workers(workers_spec, boards_spec)
        assert sorted(old) == [11, 21, 22]
        assert (old[11].worker_id, old[11].slot, old[11].board.harakiri) == (1, 0, 7)  # type: ignore[union-attr]
        assert (old[22].worker_id, old[22].slot, old[22].board.harakiri) == (2, 3, 3)  # type: ignore[union-attr]
        assert old[21].board is old[22].board
        assert old[11].board.board.cores == 1 and old[21].board.board.cores == 3  # type: ignore[union-attr]
    finally:
        for worker in list(locals().get("old", {}).values()):
            if worker.board is not None and worker.board.board.fd is not None:
                worker.board.board.close()


def test_an_older_appserver_hands_over_bare_pids() -> None:
    old = import_workers("101,102", "")
    assert [(w.pid, w.board) for w in old.values()] == [(101, None), (102, None)]
