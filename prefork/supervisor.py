"""What wakes a master: queued signals and worker notifications, behind one ``wait()``.

Signal handlers run between two bytecodes of whatever the master was doing,
so they only append the signal number to ``signals``; the master handles the
queue from its loop, where it is safe to fork, log and re-exec.  Python's
``signal.set_wakeup_fd`` writes a byte to the wake pipe for every signal, so
a ``select()`` that started just before the signal still returns at once.

Workers write to the notify pipe (``notify_w``, inherited by fork).  The
bytes are the master's protocol: appserver writes a scoreboard slot number,
edge a pid and a newline.
"""

from __future__ import annotations

import os
import select
import signal
from collections import deque
from collections.abc import Iterable, Sequence


class Supervisor:
    def __init__(self) -> None:
        self.signals: deque[int] = deque()
        self.wake_r, self.wake_w = os.pipe()
        self.notify_r, self.notify_w = os.pipe()
        for fd in (self.wake_r, self.wake_w, self.notify_r):
            os.set_blocking(fd, False)

    def install(self, handled: Iterable[int], ignored: Iterable[int] = ()) -> None:
        """Queue ``handled`` signals, ignore ``ignored`` ones, and wake ``wait()`` on each."""
        for signum in handled:
            signal.signal(signum, self._enqueue)
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def _enqueue(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def wait(
        self, timeout: float, extra: Sequence[int] = (), writable: Sequence[int] = ()
    ) -> set[int]:
        """Sleep until a signal, a notification, one of ``extra`` is readable, one of
        ``writable`` is writable, or ``timeout``.

        Returns the descriptors of ``extra`` that are readable and of ``writable``
        that are writable (a master keeps the two sets apart).
        """
        try:
            ready, out, _ = select.select(
                [self.wake_r, self.notify_r, *extra], writable, [], timeout
            )
        except InterruptedError:
            ready, out = [], []
        _drain(self.wake_r)
        return (set(ready) & set(extra)) | set(out)

    def read_notifications(self) -> bytes:
        """Everything the workers wrote since the last call (b"" when nothing)."""
        chunks = []
        try:
            while True:
                data = os.read(self.notify_r, 65536)
                if not data:
                    break
                chunks.append(data)
        except BlockingIOError:
            pass
        return b"".join(chunks)

    def enter_child(self) -> None:
        """In a freshly forked worker: stop waking the master's pipes, keep ``notify_w``."""
        signal.set_wakeup_fd(-1)
        for fd in (self.wake_r, self.wake_w, self.notify_r):
            os.close(fd)

    def detach(self) -> None:
        """Before exec or exit: signals no longer write to the wake pipe."""
        signal.set_wakeup_fd(-1)

    def close(self) -> None:
        self.detach()
        for fd in (self.wake_r, self.wake_w, self.notify_r, self.notify_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
