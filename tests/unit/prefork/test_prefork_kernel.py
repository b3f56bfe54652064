"""The pre-fork kernel with real signals, pipes and child processes."""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Iterator

import pytest

from prefork import (
    MIN_WORKER_LIFETIME,
    ExitStatus,
    RespawnSchedule,
    Supervisor,
    die_with_parent,
    fork_child,
    reap,
    send_signal,
)


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    """A Supervisor handling SIGUSR1, with the test process's handlers restored afterwards."""
    before = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)
    kernel = Supervisor()
    try:
        yield kernel
    finally:
        kernel.close()
        signal.signal(signal.SIGUSR1, before[0])
        signal.signal(signal.SIGUSR2, before[1])


def _reap_pid(pid: int, timeout: float = 10.0) -> ExitStatus:
    """Wait for one child through prefork.reap (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for exited, status in reap():
            if exited == pid:
                return status
        time.sleep(0.01)
    raise AssertionError(f"child {pid} did not exit")


# -- Supervisor ---------------------------------------------------------------------


def test_a_signal_is_queued_and_wakes_wait_at_once(supervisor: Supervisor) -> None:
    supervisor.install([signal.SIGUSR1])
    os.kill(os.getpid(), signal.SIGUSR1)
    started = time.monotonic()
    assert supervisor.wait(5.0) == set()
    assert time.monotonic() - started < 2.0
    assert list(supervisor.signals) == [signal.SIGUSR1]


def test_ignored_signals_do_not_kill_or_queue(supervisor: Supervisor) -> None:
    supervisor.install([signal.SIGUSR1], ignored=[signal.SIGUSR2])
    os.kill(os.getpid(), signal.SIGUSR2)
    supervisor.wait(0.05)
    assert list(supervisor.signals) == []


def test_wait_times_out_and_reports_ready_extra_fds(supervisor: Supervisor) -> None:
    started = time.monotonic()
    assert supervisor.wait(0.1) == set()
    assert time.monotonic() - started >= 0.09
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"x")
        assert supervisor.wait(5.0, (read_end,)) == {read_end}
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_forked_child_notifies_through_the_pipe(supervisor: Supervisor) -> None:
    supervisor.install([signal.SIGUSR1])

    def child() -> int:
        supervisor.enter_child()
        os.write(supervisor.notify_w, b"42\n")
        return 0

    pid = fork_child(child, on_crash=lambda exc: None)
    deadline = time.monotonic() + 10
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        supervisor.wait(0.5)
        data += supervisor.read_notifications()
    assert data == b"42\n"
    assert _reap_pid(pid) == ExitStatus(code=0)
    assert supervisor.read_notifications() == b""


# -- children -------------------------------------------------------------------------


def test_exit_codes_and_signals_are_told_apart() -> None:
    exits = fork_child(lambda: 17, on_crash=lambda exc: None)
    assert _reap_pid(exits) == ExitStatus(code=17)

    sleeper = fork_child(lambda: time.sleep(30) or 0, on_crash=lambda exc: None)
    assert send_signal(sleeper, signal.SIGKILL)
    status = _reap_pid(sleeper)
    assert (status.code, status.signal, status.signal_name) == (None, 9, "SIGKILL")
    assert not status.clean
    assert send_signal(sleeper, signal.SIGTERM) is False  # gone: no exception


def test_a_real_time_signal_has_a_name_too() -> None:
    number = signal.SIGRTMIN + 1
    sleeper = fork_child(lambda: time.sleep(30) or 0, on_crash=lambda exc: None)
    os.kill(sleeper, number)
    assert _reap_pid(sleeper).signal_name == str(number)


def test_an_exception_in_the_child_is_reported_there_and_never_returns() -> None:
    read_end, write_end = os.pipe()

    def child() -> int:
        raise RuntimeError("worker boot failed")

    def crashed(exc: BaseException) -> None:
        os.write(write_end, repr(exc).encode())

    pid = fork_child(child, on_crash=crashed, crash_code=3)
    os.close(write_end)
    try:
        assert _reap_pid(pid) == ExitStatus(code=3)
        assert os.read(read_end, 1000) == b"RuntimeError('worker boot failed')"
    finally:
        os.close(read_end)


def test_reap_without_children_returns_nothing() -> None:
    assert reap() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_its_parent() -> None:
    """parent -> middle -> grandchild: when middle exits, the grandchild gets SIGTERM."""
    read_end, write_end = os.pipe()

    def middle() -> int:
        middle_pid = os.getpid()

        def grandchild() -> int:
            die_with_parent(signal.SIGTERM, middle_pid)
            os.write(write_end, b"armed\n")
            time.sleep(30)
            return 0

        fork_child(grandchild, on_crash=lambda exc: None)
        # Exit only once the grandchild has asked for its parent-death signal.
        select.select([read_end], [], [], 10)
        return 0

    pid = fork_child(middle, on_crash=lambda exc: None)
    os.close(write_end)
    try:
        assert _reap_pid(pid) == ExitStatus(code=0)
        # The grandchild held the pipe's write end: EOF means it is gone.
        deadline = time.monotonic() + 10
        data = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 1)
            if ready:
                chunk = os.read(read_end, 100)
                if not chunk:
                    break
                data += chunk
        else:
            raise AssertionError("the grandchild outlived its parent")
        assert data == b"armed\n"
    finally:
        os.close(read_end)


# -- respawn back-off ----------------------------------------------------------------------


def test_a_worker_that_lived_long_enough_comes_back_at_once() -> None:
    schedule: RespawnSchedule[int] = RespawnSchedule()
    assert schedule.schedule(1, spawned_at=100.0, now=100.0 + MIN_WORKER_LIFETIME) == 0.0
    assert schedule.due(101.0) == [1]
    assert schedule.due(101.0) == []  # taken off the schedule
    assert 1 not in schedule and len(schedule) == 0


def test_a_worker_that_died_young_waits() -> None:
    schedule: RespawnSchedule[str] = RespawnSchedule(min_lifetime=2.0)
    assert schedule.schedule("a", spawned_at=10.0, now=10.5) == 2.0
    assert schedule.schedule("b", spawned_at=0.0, now=10.5) == 0.0
    assert schedule.due(10.5) == ["b"]
    assert "a" in schedule
    assert schedule.due(12.4) == []
    assert schedule.due(12.5) == ["a"]


def test_clear_forgets_every_pending_respawn() -> None:
    schedule: RespawnSchedule[int] = RespawnSchedule()
    schedule.schedule(1, 0.0, 0.1)
    schedule.schedule(2, 0.0, 5.0)
    schedule.clear()
    assert schedule.due(100.0) == []
