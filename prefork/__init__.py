"""The kernel both pre-fork masters share: appserver's and edge's.

Theory of operation
-------------------
A pre-fork master forks workers that inherit its listening sockets, then
sleeps until something happens.  Three things can happen, and this package
owns the plumbing of each, the same way for both masters:

- a signal (``supervisor.Supervisor``): handlers only enqueue the signal
  number (gunicorn's rule) and ``signal.set_wakeup_fd`` wakes the master's
  ``select()``;
- a worker says something (``Supervisor`` again): workers write to the notify
  pipe (ready, or "recycle me"); what the bytes mean is the master's business;
- a child exits (``children``): ``reap()`` collects every exited child without
  blocking and turns its wait status into an ``ExitStatus``.

``respawn.RespawnSchedule`` decides when a dead worker comes back: at once,
or after ``MIN_WORKER_LIFETIME`` if it died young, so that a crashing worker
is a slow loop, not a fork bomb.

What is *not* here, on purpose: the worker records (appserver tracks
scoreboard slots, replacements and harakiri; edge tracks generations), the
log lines (each master keeps its own wording, which users and tests grep),
and the signal meanings (SIGTERM stops appserver gracefully but edge fast,
as in gunicorn and nginx respectively).
"""

from __future__ import annotations

from prefork.children import ExitStatus, die_with_parent, fork_child, reap, send_signal
from prefork.respawn import MIN_WORKER_LIFETIME, RespawnSchedule
from prefork.supervisor import Supervisor

__all__ = [
    "MIN_WORKER_LIFETIME",
    "ExitStatus",
    "RespawnSchedule",
    "Supervisor",
    "die_with_parent",
    "fork_child",
    "reap",
    "send_signal",
]
