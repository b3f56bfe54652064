"""Forking, signalling and reaping worker processes."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

# <linux/prctl.h>
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a child ended: its exit code, or the signal that killed it."""

    code: int | None = None
    signal: int | None = None

    @classmethod
    def from_wait_status(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(signal=os.WTERMSIG(status))
        return cls(code=os.waitstatus_to_exitcode(status))

    @property
    def signal_name(self) -> str:
        """``SIGKILL`` for 9; the number itself for a signal Python has no name for."""
        if self.signal is None:
            return ""
        try:
            return signal.Signals(self.signal).name
        except ValueError:  # real-time signals have no enum member
            return str(self.signal)

    @property
    def clean(self) -> bool:
        return self.code == 0


def reap() -> list[tuple[int, ExitStatus]]:
    """Every child that has exited, without blocking."""
    exited = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        exited.append((pid, ExitStatus.from_wait_status(status)))
    return exited


def send_signal(pid: int, signum: int) -> bool:
    """Signal ``pid``; False if it is already gone."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def fork_child(
    main: Callable[[], int], *, on_crash: Callable[[BaseException], None], crash_code: int = 1
) -> int:
    """Fork; the child runs ``main`` and exits with its code.  Returns the child's pid.

    This is the worker process's outermost boundary: an exception that escapes
    ``main`` is handed to ``on_crash`` (still inside the ``except``, so a
    traceback can be formatted) and the child exits ``crash_code``.  The child
    never returns into the master's code, whatever happens.
    """
    pid = os.fork()
    if pid:
        return pid
    code = crash_code
    try:
        code = main()
    except BaseException as exc:  # the worker's outermost boundary
        try:
            on_crash(exc)
        except BaseException:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def die_with_parent(signum: int, parent_pid: int) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies (Linux).

    Called in a freshly forked child.  If the parent already died between the
    fork and this call, the child was re-parented and exits at once.  The
    setting survives exec and fork of the parent but is cleared if this
    process changes credentials, which is why masters drop privileges before
    they fork.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(0)
