"""Workers never outlive their master (what uWSGI's no-orphans asks for, always on here)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status  # exited, waiting for init to reap it


def test_workers_exit_when_the_master_is_killed(start_test_app) -> None:
    server = start_test_app("--processes", "2", "--threads", "2")
    server.wait_ready(2)
    server.address()
    workers = [int(pid) for pid in re.findall(r"spawned worker \d \(pid: (\d+)", server.log())]
    assert len(workers) == 2 and not any(_gone(pid) for pid in workers)
    server.signal(signal.SIGKILL)  # no chance to stop anything
    server.wait(10)
    deadline = time.monotonic() + 15
    while not all(_gone(pid) for pid in workers):
        assert time.monotonic() < deadline, f"orphaned workers kept running:\n{server.log()}"
        time.sleep(0.05)
