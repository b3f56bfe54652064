"""Start real server processes for integration tests and read what they log.

Servers are started on port 0; the bound address is read back from their
log ("listening on uwsgi://127.0.0.1:41234"), so tests never race for ports.
On failure the log is part of the assertion message.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(
        self, argv: list[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """Wait until the log (from character ``start``) matches ``pattern``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            text = self.log()[start:]
            match = regex.search(text)
            if match:
                return match
            if self.proc is not None and self.proc.poll() is not None and not match:
                # The process is gone: one last read, then fail with the log.
                text = self.log()[start:]
                match = regex.search(text)
                if match:
                    return match
                raise AssertionError(
                    f"server exited ({self.proc.returncode}) before logging {pattern!r}; log:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r}; log:\n{self.log()}")
            time.sleep(0.05)

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log()))

    def address(self, scheme: str = "uwsgi") -> tuple[str, int]:
        match = self.wait_for_log(rf"listening on {scheme}://(\[?[0-9a-f.:]+\]?):(\d+)")
        return match.group(1).strip("[]"), int(match.group(2))

    def wait_ready(self, workers: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``workers`` workers have been spawned and had time to reach accept()."""
        deadline = time.monotonic() + timeout
        while self.count(r"spawned worker") < workers:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}); log:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"workers did not start; log:\n{self.log()}")
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


def appserver(
    args: list[str], *, cwd: Path, log_path: Path, env: dict[str, str] | None = None
) -> ServerProcess:
    return ServerProcess(
        [sys.executable, "-m", "appserver", *args], cwd=cwd, log_path=log_path, env=env
    ).start()
