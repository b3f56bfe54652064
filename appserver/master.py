"""The master process: binds, loads, forks workers and keeps them healthy.

Theory of operation
-------------------
The master binds every listener once, loads the app (unless ``lazy-apps``),
and forks ``processes`` workers that inherit the sockets.  Then it sleeps in
``select()`` on two pipes: signals arrive through ``signal.set_wakeup_fd``
and a queue (handlers only enqueue, as in gunicorn), and workers write their
scoreboard slot number to the notify pipe when they are ready or want to be
recycled.  Once a second it reaps children, enforces harakiri and
reload-on-rss, and checks touch-reload files.

Replacing a worker never leaves a gap: the replacement is forked first, and
the old worker is told to stop (SIGTERM: finish what it is doing) only once
the new one is accepting.  The scoreboard has two slots per worker for this.

Signals, and how they differ from uWSGI 2.0 (see the README's table):

- SIGTERM: graceful stop - workers finish their requests, then exit.  uWSGI
  2.0 reloads on SIGTERM unless ``die-on-term``; that is what makes
  ``docker stop`` hang, so we stop, like gunicorn.
- SIGINT, SIGQUIT: fast stop.
- SIGHUP: graceful reload.  The master re-executes itself with the same
  listening sockets (file descriptors survive exec), re-reads its config,
  loads the app afresh, starts new workers and only then stops the old ones,
  which were its children before exec and still are.  A config that no longer
  parses is refused before exec and the old generation keeps serving.
- SIGUSR1: logs a one-line status of every worker.

Harakiri reads ``CLOCK_MONOTONIC`` (``Arbiter.clock``), never the wall clock,
so a clock step neither kills every busy worker nor spares a stuck one.  It
also covers the old generation while it drains after a reload: the
scoreboard is a memfd handed across the re-exec together with each old
worker's slot, and each old worker keeps the harakiri it was started with.

The wake pipe, the notify pipe, reaping and the respawn back-off are the
``prefork`` kernel, shared with edge's master.  The master drops ``uid`` /
``gid`` (``appserver.privileges``) after binding, daemonizing and writing the
pidfile, and before it loads the app or forks a worker.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from appserver import listeners as listeners_mod
from appserver import metrics, privileges, router, stats
from appserver import scoreboard as sb
from appserver.config import AppServerConfig, ConfigError
from appserver.listeners import INHERIT_ENV, Listener, ListenerError, prepare_listener
from appserver.loader import (
    AppLoadError,
    WSGIApp,
    describe_application,
    load_application,
    prepare_interpreter,
)
from appserver.log import configure as configure_logging
from appserver.log import emit, format_startup, log_path, redirect_output
from appserver.pidfile import remove_pidfile, write_pidfile
from appserver.privileges import PrivilegeError
from appserver.scoreboard import Retained, Scoreboard
from appserver.status_http import StatusServer
from appserver.status_page import STATUS_PAGE
from appserver.worker import EXIT_APP_LOAD_FAILED, Worker
from prefork import ExitStatus, RespawnSchedule, Supervisor, die_with_parent, fork_child
from prefork import reap as reap_children
from prefork import send_signal as _signal
from promtext import CONTENT_TYPE

OLD_WORKERS_ENV = "APPSERVER_OLD_WORKERS"
OLD_BOARDS_ENV = "APPSERVER_OLD_BOARDS"
REEXEC_ENV = "APPSERVER_REEXEC"
LAUNCH_CWD_ENV = "APPSERVER_LAUNCH_CWD"
RETAINED_ENV = "APPSERVER_RETAINED"  # fd of the retained totals (scoreboard.Retained)
METRICS_ENV = "APPSERVER_METRICS_LISTENER"  # fd:address of the metrics-http listener

# Exit codes of the appserver command.
EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_APP = 4

TICK = 1.0
FAST_STOP_GRACE = 3.0
_HANDLED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGCHLD,
)


class ConfigLoader(Protocol):
    """``appserver.cli.load_config``: how a reload re-reads argv (passed in, so the
    master does not import the command line that imports it)."""

    def __call__(
        self, argv: Sequence[str], *, cwd: str | None = None
    ) -> tuple[AppServerConfig, list[str]]: ...


@dataclass(slots=True)
class WorkerProcess:
    worker_id: int  # 1..processes, the number users see (uWSGI's "worker 1")
    slot: int  # scoreboard slot
    pid: int
    spawned_at: float
    respawns: int = 0
    ready: bool = False
    stop_sent_at: float | None = None  # SIGTERM sent (graceful) at this monotonic time
    killed_for: str | None = None  # why the master killed it ("harakiri", ...)
    replaced_by: int | None = None  # pid of the worker taking its place
    replacing: int | None = None  # pid of the worker it will replace once ready


@dataclass(slots=True)
class InheritedBoard:
    """The scoreboard of an earlier generation, mapped while its workers drain."""

    board: Scoreboard
    harakiri: int  # the limit those workers were started with


@dataclass(slots=True)
class OldWorker:
    """A worker of the generation before a graceful reload (a child of this process)."""

    pid: int
    worker_id: int = 0
    board: InheritedBoard | None = None  # None: handed over without its slot (no harakiri)
    slot: int = -1
    stop_sent_at: float | None = None
    killed_for: str | None = None


def export_workers(
    board: Scoreboard,
    harakiri: int,
    current: Iterable[tuple[int, int, int]],
    old: Iterable[OldWorker],
) -> tuple[str, str, list[int]]:
    """Describe this generation's workers ``(pid, worker_id, slot)`` and the older ones
    for the re-executed master: (workers spec, boards spec, board fds to keep open).

    A worker is ``pid:worker_id:board:slot``, ``board`` indexing the boards spec,
    whose entries are ``fd:workers:cores:harakiri``.  A bare ``pid`` is a worker
    whose board could not be handed over (no memfd): it is stopped, not watched.
    """
    boards: list[tuple[Scoreboard, int]] = []
    index_of: dict[int, int] = {}

    def board_index(candidate: Scoreboard, limit: int) -> int | None:
        if candidate.fd is None:
            return None
        if id(candidate) not in index_of:
            index_of[id(candidate)] = len(boards)
            boards.append((candidate, limit))
        return index_of[id(candidate)]

    items = []
    for pid, worker_id, slot in current:
        index = board_index(board, harakiri)
        items.append(str(pid) if index is None else f"{pid}:{worker_id}:{index}:{slot}")
    for worker in old:
        inherited = worker.board
        index = None if inherited is None else board_index(inherited.board, inherited.harakiri)
        items.append(
            str(worker.pid)
            if index is None
            else f"{worker.pid}:{worker.worker_id}:{index}:{worker.slot}"
        )
    boards_spec = ";".join(
        f"{candidate.fd}:{candidate.workers}:{candidate.cores}:{limit}"
        for candidate, limit in boards
    )
    return (
        ",".join(items),
        boards_spec,
        [candidate.fd for candidate, _ in boards if candidate.fd is not None],
    )


def import_workers(workers_spec: str, boards_spec: str) -> dict[int, OldWorker]:
    """The old generation as ``export_workers`` described it, with its boards mapped."""
    boards = []
    for item in boards_spec.split(";"):
        if not item:
            continue
        fd, workers, cores, harakiri = (int(part) for part in item.split(":"))
        os.set_inheritable(fd, False)
        boards.append(InheritedBoard(Scoreboard.attach(fd, workers, cores), harakiri))
    old: dict[int, OldWorker] = {}
    for item in workers_spec.split(","):
        if not item:
            continue
        fields = [int(part) for part in item.split(":")]
        if len(fields) == 4:
            pid, worker_id, index, slot = fields
            old[pid] = OldWorker(pid, worker_id, boards[index], slot)
        else:  # a bare pid (an older appserver's format)
            old[fields[0]] = OldWorker(fields[0])
    used = {id(worker.board) for worker in old.values()}
    for inherited in boards:
        if id(inherited) not in used:
            inherited.board.close()
    return old


@dataclass
class Arbiter:
    config: AppServerConfig
    listeners: list[Listener]
    app: WSGIApp | None
    load_config: ConfigLoader
    old_workers: dict[int, OldWorker] = field(default_factory=dict)
    degraded: bool = False  # the reload failed to load the app: only the old generation serves
    routers: dict[str, int] = field(default_factory=dict)  # http address -> pid of its HTTP front
    # Harakiri's clock: CLOCK_MONOTONIC, the clock CoreSlot.begin records (a seam for tests).
    clock: Callable[[], float] = time.monotonic
    # Counts of exited workers; a re-executed master gets its predecessor's (run()).
    retained: Retained | None = None
    # The metrics-http listener a re-executed master inherited: (socket, its address).
    metrics_inherited: tuple[socket.socket, str] | None = None

    def __post_init__(self) -> None:
        self.board = Scoreboard(workers=2 * self.config.processes, cores=self.config.threads)
        if self.retained is None:
            self.retained = Retained(self.config.processes)
        self.totals: Retained = self.retained
        self.metrics_server: StatusServer | None = None
        self._status_page = STATUS_PAGE.encode("utf-8")
        self.workers: dict[int, WorkerProcess] = {}
        self.supervisor = Supervisor()
        self.stopping: str | None = None  # "graceful" or "fast"
        self.stop_deadline = 0.0
        self.respawn: RespawnSchedule[int] = RespawnSchedule()  # by worker_id
        self.touch_mtimes = {path: _mtime(path) for path in self.config.touch_reload}
        self.ever_ready = False
        self.stats_sock: socket.socket | None = None
        self.started_at = time.time()
        self.last_tick = 0.0
        self.exit_code = EXIT_OK
        self.workers_stop_pending = False
        self.respawn_counts: dict[int, int] = {}
        self.pid = os.getpid()
        self.harakiri_counts: dict[int, int] = {}

    # -- start -------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        if self.config.stats:
            self._open_stats()
        self._open_metrics()
        if not self.degraded:
            for worker_id in range(1, self.config.processes + 1):
                self._spawn(worker_id)
        self._start_routers()
        assert self.app is not None or self.config.lazy_apps or self.degraded
        try:
            return self._loop()
        finally:
            self._cleanup()

    def _install_signals(self) -> None:
        self.supervisor.install(_HANDLED)

    def _open_stats(self) -> None:
        assert self.config.stats is not None
        try:
            listener = listeners_mod.bind("stats", self.config.stats, 16, None)
        except ListenerError as exc:
            emit(f"stats server disabled: {exc}")
            return
        self.stats_sock = listener.sock
        emit(f"stats server on {listener.bound} (uwsgitop {listener.bound})")

    def _open_metrics(self) -> None:
        """Serve metrics-http; a re-executed master keeps its predecessor's listener."""
        address = self.config.metrics_http
        inherited, self.metrics_inherited = self.metrics_inherited, None
        if inherited is not None:
            sock, was = inherited
            if address == was:
                self.metrics_server = StatusServer(sock, self._metrics_answer)
                return
            sock.close()
        if address is None:
            return
        try:
            listener = listeners_mod.bind("metrics-http", address, 64, None)
        except ListenerError as exc:
            emit(f"metrics server disabled: {exc}")
            return
        self.metrics_server = StatusServer(listener.sock, self._metrics_answer)
        emit(f"metrics server on http://{listener.bound}/metrics (also /status, /status.json)")

    # -- spawning ------------------------------------------------------------------

    def _free_slot(self) -> int | None:
        used = {process.slot for process in self.workers.values()}
        for slot in range(self.board.workers):
            if slot not in used:
                return slot
        return None

    def _spawn(
        self, worker_id: int, respawns: int = 0, replacing: int | None = None
    ) -> WorkerProcess:
        slot = self._free_slot()
        if slot is None:
            raise RuntimeError("scoreboard full: more workers than slots")
        self.board.reset_worker(slot, 0, respawns, self.harakiri_counts.get(worker_id, 0))

        def crashed(exc: BaseException) -> None:
            emit(
                f"worker {worker_id} (pid: {os.getpid()}) crashed:\n{traceback.format_exc().rstrip()}"
            )

        pid = fork_child(lambda: self._become_worker(worker_id, slot), on_crash=crashed)
        if respawns:
            self.totals.add(worker_id, sb.RESPAWNS)
        self.board.set_pid(slot, pid)
        process = WorkerProcess(
            worker_id, slot, pid, time.monotonic(), respawns, replacing=replacing
        )
        self.workers[pid] = process
        emit(f"spawned worker {worker_id} (pid: {pid}, threads: {self.config.threads})")
        return process

    def _become_worker(self, worker_id: int, slot: int) -> int:
        """The worker process, from fork to exit; returns its exit code."""
        self.supervisor.enter_child()
        # no-orphans: a worker whose master died stops gracefully.  SIGTERM's default
        # action covers the moments before Worker.run installs its own handler.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent(signal.SIGTERM, self.pid)
        self.board.close_fd()  # the mapping stays; the descriptor is the master's
        for old in self.old_workers.values():
            if old.board is not None:
                old.board.board.close_fd()
        if self.stats_sock is not None:
            self.stats_sock.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        self.totals.close_fd()
        app = self.app
        if app is None:
            try:
                prepare_interpreter(self.config)
                app = load_application(self.config)
            except AppLoadError as exc:
                emit(f"worker {worker_id} (pid: {os.getpid()}): cannot load the app: {exc}")
                if exc.__cause__ is not None:
                    emit("".join(traceback.format_exception(exc.__cause__)).rstrip())
                return EXIT_APP_LOAD_FAILED
        worker = Worker(
            self.config, app, self.listeners, self.board, slot, worker_id, self.supervisor.notify_w
        )
        return worker.run()

    # -- the loop ------------------------------------------------------------------

    def _loop(self) -> int:
        signals = self.supervisor.signals
        while True:
            stats_fd = self.stats_sock.fileno() if self.stats_sock is not None else None
            watched = [] if stats_fd is None else [stats_fd]
            server = self.metrics_server
            reading_fds = server.read_fds() if server is not None else []
            writing_fds = server.write_fds() if server is not None else []
            ready = self.supervisor.wait(TICK, [*watched, *reading_fds], writing_fds)
            notifications = self.supervisor.read_notifications()
            if notifications:
                self._read_notifications(notifications)
            if stats_fd is not None and stats_fd in ready:
                self._serve_stats()
            if server is not None:
                server.step(
                    ready.intersection(reading_fds),
                    ready.intersection(writing_fds),
                    time.monotonic(),
                )
            while signals:
                result = self._handle_signal(signals.popleft())
                if result is not None:
                    return result
            self._reap()
            now = time.monotonic()
            if self.stopping:
                if self.workers_stop_pending and not self.routers:
                    # The HTTP front has finished its requests: now the workers may stop.
                    self.workers_stop_pending = False
                    self._kill_all(signal.SIGTERM)
                if not self.workers and not self.old_workers and not self.routers:
                    return EXIT_OK
                if now >= self.stop_deadline:
                    self._kill_all(signal.SIGKILL)
                continue
            self._respawn_missing(now)
            if now - self.last_tick >= TICK:
                self.last_tick = now
                self._check_harakiri()
                self._check_rss()
                self._check_touch_reload()
                self._check_mercy(now)
            if (
                self.app is None
                and not self.config.lazy_apps
                and not self.workers
                and not self.old_workers
            ):
                return EXIT_APP

    def _handle_signal(self, signum: int) -> int | None:
        if signum == signal.SIGCHLD:
            return None
        if signum == signal.SIGTERM:
            self._begin_stop("graceful")
        elif signum in (signal.SIGINT, signal.SIGQUIT):
            self._begin_stop("fast")
        elif signum == signal.SIGHUP:
            self._reload()
        elif signum == signal.SIGUSR1:
            self._log_status()
        return None

    # -- workers telling us things ---------------------------------------------------

    def _read_notifications(self, data: bytes) -> None:
        """Workers write their slot number when their scoreboard state changed."""
        by_slot = {process.slot: process for process in self.workers.values()}
        for slot in set(data):
            process = by_slot.get(slot)
            if process is None:
                continue
            state = self.board.state(slot)
            # The pipe carries "my state changed", not each change: a replacement can be
            # READY and already RECYCLE by the time we look, and must count as ready too
            # (else its predecessor is never stopped and the scoreboard fills up).
            if state in (sb.READY, sb.RECYCLE) and not process.ready:
                process.ready = True
                self._on_ready(process)
            if state == sb.RECYCLE and process.replaced_by is None and not self.stopping:
                requests = self.board.snapshot(slot).requests
                emit(
                    f"worker {process.worker_id} (pid: {process.pid}) served {requests} requests "
                    f"(max-requests {self.config.max_requests}): recycling it"
                )
                self._replace(process)

    def _on_ready(self, process: WorkerProcess) -> None:
        if not self.ever_ready:
            self.ever_ready = True
        if process.replacing is not None:
            old = self.workers.get(process.replacing)
            if old is not None:
                self._stop_worker(old)
            process.replacing = None
        if self.old_workers and all(p.ready for p in self.workers.values()):
            emit(
                f"reload: the new workers are ready; stopping {len(self.old_workers)} old worker(s) gracefully"
            )
            now = time.monotonic()
            for old_worker in self.old_workers.values():
                if old_worker.stop_sent_at is None:
                    _signal(old_worker.pid, signal.SIGTERM)
                    old_worker.stop_sent_at = now

    def _replace(self, process: WorkerProcess) -> None:
        """Start a new worker for the same worker id; stop ``process`` once it is accepting.

        Each worker has two scoreboard slots: itself and its replacement.  A
        replacement that reaches max-requests while its predecessor still drains
        waits for that slot (``_replace_waiting``, when a worker exits); it has
        stopped accepting, so its siblings or its successor take the traffic.
        """
        if self.app is None and not self.config.lazy_apps:
            return
        if self._free_slot() is None:
            return
        replacement = self._spawn(process.worker_id, process.respawns + 1, replacing=process.pid)
        process.replaced_by = replacement.pid

    def _replace_waiting(self) -> None:
        """Recycle the workers that reached max-requests while no slot was free."""
        if self.stopping:
            return
        for process in list(self.workers.values()):
            if process.replaced_by is None and self.board.state(process.slot) == sb.RECYCLE:
                self._replace(process)

    def _stop_worker(self, process: WorkerProcess) -> None:
        if process.stop_sent_at is None:
            process.stop_sent_at = time.monotonic()
            self.board.set_state(process.slot, sb.STOPPING)
            _signal(process.pid, signal.SIGTERM)

    # -- the HTTP front (``http`` option) -----------------------------------------------

    def _private_socket(self) -> Listener | None:
        return next(
            (listener for listener in self.listeners if listener.protocol == router.PROTOCOL), None
        )

    def _start_routers(self) -> None:
        for address, pid in list(self.routers.items()):
            if address not in self.config.http:
                emit(f"http front on {address} is no longer configured: stopping it (pid: {pid})")
                _signal(pid, signal.SIGQUIT)
        private = self._private_socket()
        if private is None:
            return
        for address in self.config.http:
            if address not in self.routers:
                pid = router.spawn(address, private)
                self.routers[address] = pid
                emit(f"spawned http front on {address} (pid: {pid})")

    def _on_router_exit(self, pid: int, status: ExitStatus) -> None:
        address = next(a for a, p in self.routers.items() if p == pid)
        del self.routers[address]
        if self.stopping or address not in self.config.http:
            emit(f"http front on {address} (pid: {pid}) {_describe_exit(status)}")
            return
        emit(
            f"http front on {address} (pid: {pid}) {_describe_exit(status)} unexpectedly; respawning it"
        )
        time.sleep(0.2)  # an edge that cannot bind would otherwise respawn in a tight loop
        self._start_routers()

    # -- reaping ---------------------------------------------------------------------

    def _reap(self) -> None:
        for pid, status in reap_children():
            if pid in self.routers.values():
                self._on_router_exit(pid, status)
                continue
            old = self.old_workers.pop(pid, None)
            if old is not None:
                reason = f" ({old.killed_for})" if old.killed_for else ""
                emit(f"old worker (pid: {pid}) {_describe_exit(status)}{reason}")
                if old.board is not None:
                    snapshot = old.board.board.snapshot(old.slot)
                    if snapshot.pid == old.pid:
                        self.totals.fold(old.worker_id, snapshot.cores)
                self._release_board(old.board)
                continue
            process = self.workers.pop(pid, None)
            if process is None:
                continue
            self._on_worker_exit(process, status)

    def _release_board(self, inherited: InheritedBoard | None) -> None:
        """Unmap an old generation's board once the last of its workers is gone."""
        if inherited is None:
            return
        if all(old.board is not inherited for old in self.old_workers.values()):
            inherited.board.close()

    def _on_worker_exit(self, process: WorkerProcess, status: ExitStatus) -> None:
        # Its counts outlive it (before the slot can be reused by a spawn).
        self.totals.fold(process.worker_id, self.board.snapshot(process.slot).cores)
        self.board.set_state(process.slot, sb.EMPTY)
        self._replace_waiting()  # its slot is free now
        how = _describe_exit(status)
        label = f"worker {process.worker_id} (pid: {process.pid})"
        if self.stopping:
            emit(f"{label} {how}")
            return
        if process.stop_sent_at is not None:
            emit(f"{label} {how} (replaced)")
            return
        if status.code == EXIT_APP_LOAD_FAILED and not self.ever_ready:
            emit(f"{label}: the app failed to load at boot; stopping the server")
            self._begin_stop("fast")
            self.exit_code = EXIT_APP
            return
        if process.killed_for is not None:
            emit(f"{label} {how} ({process.killed_for}); respawning it")
        else:
            emit(f"{label} {how} unexpectedly; respawning it")
        # A replacement in progress takes the dead worker's place by itself.
        replacement = next((p for p in self.workers.values() if p.replacing == process.pid), None)
        if replacement is not None:
            replacement.replacing = None
            return
        self.respawn.schedule(process.worker_id, process.spawned_at, time.monotonic())
        self.respawn_counts[process.worker_id] = process.respawns + 1

    def _respawn_missing(self, now: float) -> None:
        if self.degraded or (self.app is None and not self.config.lazy_apps):
            return
        for worker_id in self.respawn.due(now):
            self._spawn(worker_id, self.respawn_counts.get(worker_id, 1))

    # -- the once-a-second checks --------------------------------------------------------

    def _check_harakiri(self) -> None:
        now = self.clock()
        limit = self.config.harakiri
        for process in list(self.workers.values()) if limit else ():
            if process.killed_for is not None:
                continue
            overdue = self.board.snapshot(process.slot).overdue(now, limit)
            if overdue is None:
                continue
            core_index, core = overdue
            emit(
                f"HARAKIRI ON WORKER {process.worker_id} (pid: {process.pid}, core: {core_index}): "
                f"{core.request_line} has run for {now - core.busy_since_monotonic:.1f}s > harakiri {limit}s; killing it"
            )
            process.killed_for = "harakiri"
            self.totals.add(process.worker_id, sb.HARAKIRI)
            self.harakiri_counts[process.worker_id] = (
                self.harakiri_counts.get(process.worker_id, 0) + 1
            )
            _signal(process.pid, signal.SIGKILL)
        # The old generation, draining after a reload, under the limit it was started with.
        for old in list(self.old_workers.values()):
            inherited = old.board
            if inherited is None or not inherited.harakiri or old.killed_for is not None:
                continue
            snapshot = inherited.board.snapshot(old.slot)
            if snapshot.pid != old.pid:
                continue
            overdue = snapshot.overdue(now, inherited.harakiri)
            if overdue is None:
                continue
            core_index, core = overdue
            emit(
                f"HARAKIRI ON WORKER {old.worker_id} (pid: {old.pid}, core: {core_index}, old generation): "
                f"{core.request_line} has run for {now - core.busy_since_monotonic:.1f}s > harakiri {inherited.harakiri}s; killing it"
            )
            old.killed_for = "harakiri"
            self.totals.add(old.worker_id, sb.HARAKIRI)
            _signal(old.pid, signal.SIGKILL)

    def _check_rss(self) -> None:
        limit_mb = self.config.reload_on_rss
        if not limit_mb:
            return
        for process in list(self.workers.values()):
            if (
                process.replaced_by is not None
                or process.stop_sent_at is not None
                or not process.ready
            ):
                continue
            rss, _ = stats.memory(process.pid)
            if rss > limit_mb * 1024 * 1024:
                emit(
                    f"worker {process.worker_id} (pid: {process.pid}) uses {rss // (1024 * 1024)} MB "
                    f"> reload-on-rss {limit_mb} MB: recycling it"
                )
                self._replace(process)

    def _check_touch_reload(self) -> None:
        for path, before in self.touch_mtimes.items():
            now = _mtime(path)
            if now != before:
                self.touch_mtimes[path] = now
                emit(f"touch-reload: {path} changed; reloading gracefully")
                self.supervisor.signals.append(signal.SIGHUP)
                return

    def _check_mercy(self, now: float) -> None:
        mercy = self.config.worker_reload_mercy
        for process in self.workers.values():
            if process.stop_sent_at is not None and now - process.stop_sent_at > mercy:
                emit(
                    f"worker {process.worker_id} (pid: {process.pid}) still busy {mercy}s after SIGTERM (worker-reload-mercy): killing it"
                )
                process.stop_sent_at = now  # once
                _signal(process.pid, signal.SIGKILL)
        for old in self.old_workers.values():
            if old.stop_sent_at is not None and now - old.stop_sent_at > mercy:
                emit(f"old worker (pid: {old.pid}) still busy {mercy}s after SIGTERM: killing it")
                old.stop_sent_at = now
                _signal(old.pid, signal.SIGKILL)

    # -- stop and reload -------------------------------------------------------------------

    def _begin_stop(self, how: str) -> None:
        if self.stopping == "fast" or self.stopping == how:
            return
        self.stopping = how
        if how == "graceful":
            emit(
                f"graceful stop: waiting up to {self.config.worker_reload_mercy}s for requests in flight"
            )
            self.stop_deadline = time.monotonic() + self.config.worker_reload_mercy
            if self.routers:
                # The HTTP front stops first (edge: SIGQUIT is graceful) so that every
                # request it has accepted still finds a worker.
                for pid in self.routers.values():
                    _signal(pid, signal.SIGQUIT)
                self.workers_stop_pending = True
                return
            signum = signal.SIGTERM
        else:
            emit("fast stop")
            self.stop_deadline = time.monotonic() + FAST_STOP_GRACE
            for pid in self.routers.values():
                _signal(pid, signal.SIGTERM)  # edge: SIGTERM is its fast stop
            signum = signal.SIGINT
        self._kill_all(signum)

    def _kill_all(self, signum: int) -> None:
        pids = list(self.workers) + list(self.old_workers)
        if signum == signal.SIGKILL:
            pids += list(self.routers.values())
        for pid in pids:
            _signal(pid, signum)

    def _reload(self) -> None:
        if self.stopping:
            return
        argv = list(self.config.argv)
        launch_cwd = os.environ.get(LAUNCH_CWD_ENV) or os.getcwd()
        try:
            os.chdir(launch_cwd)
            new_config, _ = self.load_config(argv, cwd=launch_cwd)
            # A master that already gave up root cannot take other ids: refuse before exec.
            privileges.check_reachable(privileges.resolve(new_config.uid, new_config.gid))
        except (ConfigError, PrivilegeError, OSError) as exc:
            # OSError: the launch directory, entered as root, may be closed to the dropped user.
            reason = f"{_where(exc)}{exc.strerror}" if isinstance(exc, OSError) else str(exc)
            emit(f"reload refused, still serving with the old config: {reason}")
            if self.config.chdir:
                try:
                    os.chdir(self.config.chdir)
                except OSError:
                    pass
            return
        emit(
            "graceful reload: re-executing the master; the old workers serve until the new ones are ready"
        )
        env = dict(os.environ)
        env[INHERIT_ENV] = listeners_mod.export(self.listeners)
        current = [(p.pid, p.worker_id, p.slot) for p in self.workers.values()]
        env[OLD_WORKERS_ENV], env[OLD_BOARDS_ENV], board_fds = export_workers(
            self.board, self.config.harakiri, current, self.old_workers.values()
        )
        env[router.ROUTER_PID_ENV] = ",".join(
            f"{address}={pid}" for address, pid in self.routers.items()
        )
        env[REEXEC_ENV] = "1"
        env[LAUNCH_CWD_ENV] = launch_cwd
        if self.stats_sock is not None:
            self.stats_sock.close()
            self.stats_sock = None
        handed = list(board_fds)
        if self.totals.fd is not None:
            env[RETAINED_ENV] = str(self.totals.fd)
            handed.append(self.totals.fd)
        if self.metrics_server is not None and self.config.metrics_http is not None:
            # Kept open across exec: scrapes during a reload wait in its queue.  The ones
            # accepted already are answered first (exec would close them).
            self.metrics_server.finish(0.5)
            metrics_fd = self.metrics_server.sock.fileno()
            env[METRICS_ENV] = f"{metrics_fd}:{self.config.metrics_http}"
            handed.append(metrics_fd)
        self.supervisor.detach()
        for fd in handed:
            os.set_inheritable(fd, True)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(sys.executable, [sys.executable, "-m", "appserver", *argv], env)
        except OSError as exc:
            # Still the old master: undo the hand-over and keep serving.
            for fd in handed:
                os.set_inheritable(fd, False)
            for listener in self.listeners:
                os.set_inheritable(listener.sock.fileno(), False)
            self.supervisor.install(())
            if self.config.stats:
                self._open_stats()
            if self.config.chdir:
                os.chdir(self.config.chdir)
            emit(
                f"reload failed, still serving with the old config: cannot execute {sys.executable}: {exc.strerror}"
            )

    def _log_status(self) -> None:
        parts = []
        for process in sorted(self.workers.values(), key=lambda p: p.worker_id):
            snapshot = self.board.snapshot(process.slot)
            busy = sum(1 for core in snapshot.cores if core.busy_since)
            parts.append(
                f"worker {process.worker_id} pid {process.pid} {sb.STATE_NAMES.get(snapshot.state, '?')} "
                f"requests {snapshot.requests} busy {busy}/{len(snapshot.cores)}"
            )
        emit("status: " + "; ".join(parts))

    # -- stats ------------------------------------------------------------------------------

    def _serve_stats(self) -> None:
        assert self.stats_sock is not None
        try:
            client, _ = self.stats_sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        try:
            client.settimeout(1.0)
            client.sendall(self._stats_document())
        except OSError:
            pass
        finally:
            client.close()

    def _stats_document(self) -> bytes:
        master = stats.MasterStats(
            os.getpid(), os.getuid(), os.getgid(), os.getcwd(), self.started_at
        )
        sockets = [
            stats.socket_stats(listener.bound, listener.protocol, listener.sock, self.config.listen)
            for listener in self.listeners
        ]
        workers = []
        for process in sorted(self.workers.values(), key=lambda p: (p.worker_id, p.slot)):
            rss, vsz = stats.memory(process.pid)
            workers.append(
                stats.WorkerStats(
                    process.worker_id,
                    process.pid,
                    process.stop_sent_at is not None,
                    self.board.snapshot(process.slot),
                    rss,
                    vsz,
                )
            )
        return stats.render_stats(master, sockets, workers, time.time())

    # -- metrics-http ---------------------------------------------------------------------

    def _reading(self) -> metrics.Reading:
        """The figures now: between two reaps, so every worker is counted exactly once."""
        processes = []
        for process in self.workers.values():
            rss, vsz = stats.memory(process.pid)
            processes.append(
                metrics.ProcessReading(
                    process.worker_id,
                    process.pid,
                    False,
                    process.stop_sent_at is not None,
                    self.board.snapshot(process.slot),
                    rss,
                    vsz,
                )
            )
        for old in self.old_workers.values():
            if old.board is None:
                continue
            snapshot = old.board.board.snapshot(old.slot)
            if snapshot.pid != old.pid:
                continue
            rss, vsz = stats.memory(old.pid)
            processes.append(
                metrics.ProcessReading(old.worker_id, old.pid, True, True, snapshot, rss, vsz)
            )
        totals = self.totals
        sockets = tuple(
            stats.socket_stats(listener.bound, listener.protocol, listener.sock, self.config.listen)
            for listener in self.listeners
        )
        return metrics.Reading(
            time=time.time(),
            master_pid=os.getpid(),
            processes=tuple(processes),
            retained={worker_id: totals.totals(worker_id) for worker_id in totals.worker_ids()},
            sockets=sockets,
            reloads=totals.reloads,
            last_reload=totals.last_reload,
            started=totals.started,
            worker_ids=tuple(range(1, self.config.processes + 1)),
        )

    def _metrics_answer(self, path: str) -> tuple[int, str, bytes] | None:
        if path == "/metrics":
            return 200, CONTENT_TYPE, metrics.prometheus_text(self._reading())
        if path == "/status.json":
            document = metrics.status_document(self._reading())
            return 200, "application/json", json.dumps(document).encode()
        if path in ("/status", "/status/"):
            return 200, "text/html; charset=utf-8", self._status_page
        return None

    def _cleanup(self) -> None:
        private = self._private_socket()
        directory = router.private_directory(private) if private is not None else None
        listeners_mod.close_all(self.listeners, self.config.vacuum)
        if directory is not None:
            router.remove_private_directory(directory)
        if self.stats_sock is not None:
            self.stats_sock.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.config.pidfile:
            _remove_pidfile(self.config.pidfile)
        self.supervisor.close()


# -- helpers ---------------------------------------------------------------------------------


def _remove_pidfile(path: str) -> None:
    try:
        remove_pidfile(path, os.getpid())
    except OSError as exc:
        # Written as root, before the drop: the unprivileged master may not unlink it.
        emit(f"cannot remove the pidfile {path}: {exc.strerror}")


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _describe_exit(status: ExitStatus) -> str:
    if status.signal is not None:
        return f"was killed by signal {status.signal} ({status.signal_name})"
    return f"exited with status {status.code}"


# -- entry point -----------------------------------------------------------------------------


def run(config: AppServerConfig, load_config: ConfigLoader) -> int:
    """Run the server until it is stopped; return the process exit code.

    The order is uWSGI's: bind, daemonize and open the log, write the pidfile,
    drop privileges, and only then load the app and fork the workers.
    ``load_config`` re-reads argv on a graceful reload.
    """
    configure_logging(config)  # drains, encoders: the workers inherit them across fork
    reexec = os.environ.pop(REEXEC_ENV, None) == "1"
    os.environ.setdefault(LAUNCH_CWD_ENV, os.getcwd())
    inherited_spec = os.environ.pop(INHERIT_ENV, "")
    old_workers = import_workers(
        os.environ.pop(OLD_WORKERS_ENV, ""), os.environ.pop(OLD_BOARDS_ENV, "")
    )
    retained, metrics_inherited = _inherit_metrics(config)
    if reexec:
        retained.reloaded(time.time())
    routers = {}
    for item in os.environ.pop(router.ROUTER_PID_ENV, "").split(","):
        if item:
            address, _, pid_text = item.rpartition("=")
            routers[address] = int(pid_text)

    try:
        ids = privileges.resolve(config.uid, config.gid)
        privileges.check_reachable(ids)  # before anything is bound or written
    except PrivilegeError as exc:
        emit(f"appserver: {exc}")
        return EXIT_CONFIG

    try:
        if inherited_spec:
            listeners = listeners_mod.adopt(config, listeners_mod.inherit(inherited_spec))
        else:
            listeners = listeners_mod.bind_all(config)
        if config.http and not any(listener.protocol == router.PROTOCOL for listener in listeners):
            listeners.append(router.bind_private_socket(config.listen))
    except ListenerError as exc:
        emit(f"appserver: {exc}")
        return EXIT_CONFIG
    if len(listeners) == 0:
        emit("appserver: no listener configured")
        return EXIT_CONFIG
    # Linux copies a listener's options into a connection when its handshake completes,
    # not at accept(): set socket-timeout now, so that a client queued before the first
    # worker runs is bounded by it too (a worker sets them again, to the same values).
    for listener in listeners:
        prepare_listener(listener, float(config.socket_timeout))

    if config.daemonize and not reexec:
        _daemonize()
    path = log_path(config)
    if path and not reexec:
        try:
            redirect_output(path)
        except OSError as exc:
            emit(f"appserver: cannot open the log file {path}: {exc.strerror}")
            return EXIT_CONFIG

    # A re-executed master keeps its pid, so the pidfile is still right; it may no
    # longer have the rights to write it (uWSGI does not rewrite it either).
    if config.pidfile and not reexec:
        try:
            write_pidfile(config.pidfile, os.getpid())
        except OSError as exc:
            emit(f"appserver: cannot write the pidfile {config.pidfile}: {exc.strerror}")
            listeners_mod.close_all(listeners, config.vacuum)
            return EXIT_CONFIG

    for listener in listeners:
        if listener.protocol != router.PROTOCOL:
            emit(f"listening on {listener.display}")

    try:
        privileges.chown_for(ids, _owned_paths(listeners))
        dropped = privileges.drop_privileges(ids)
    except PrivilegeError as exc:
        emit(f"appserver: {exc}")
        _abandon(config, listeners)
        return EXIT_CONFIG
    if dropped:
        emit(dropped)

    app: WSGIApp | None = None
    degraded = False
    try:
        if not config.lazy_apps:
            try:
                prepare_interpreter(config)
                app = load_application(config)
            except AppLoadError as exc:
                if not old_workers:
                    emit(f"appserver: cannot load the app: {exc}")
                    if exc.__cause__ is not None:
                        emit("".join(traceback.format_exception(exc.__cause__)).rstrip())
                    _abandon(config, listeners)
                    return EXIT_APP
                emit(f"reload failed, the old workers keep serving: cannot load the app: {exc}")
                degraded = True
        elif config.chdir:
            os.chdir(config.chdir)
    except OSError as exc:  # chdir into a directory the (dropped) user cannot enter
        emit(f"appserver: {_where(exc)}{exc.strerror}")
        _abandon(config, listeners)
        return EXIT_CONFIG

    arbiter = Arbiter(
        config,
        listeners,
        app,
        load_config,
        old_workers=old_workers,
        degraded=degraded,
        routers=routers,
        retained=retained,
        metrics_inherited=metrics_inherited,
    )
    emit(format_startup(config, describe_application(config)))
    code = arbiter.run()
    return arbiter.exit_code or code


def _inherit_metrics(
    config: AppServerConfig,
) -> tuple[Retained, tuple[socket.socket, str] | None]:
    """The retained totals and the metrics-http listener a previous master handed over."""
    retained_fd = os.environ.pop(RETAINED_ENV, "")
    if retained_fd.isdigit():
        os.set_inheritable(int(retained_fd), False)
        retained = Retained.attach(int(retained_fd), config.processes)
    else:
        retained = Retained(config.processes)
    listener = None
    fd_text, _, address = os.environ.pop(METRICS_ENV, "").partition(":")
    if fd_text.isdigit():
        os.set_inheritable(int(fd_text), False)
        listener = (socket.socket(fileno=int(fd_text)), address)
    return retained, listener


def _where(exc: OSError) -> str:
    return f"{exc.filename}: " if exc.filename else ""


def _owned_paths(listeners: list[Listener]) -> list[str]:
    """Files the master created as root that the dropped user must own: unix sockets,
    and the HTTP front's private directory (the front runs as that user too)."""
    paths = []
    for listener in listeners:
        name = listener.sock.getsockname() if listener.is_unix else None
        if not isinstance(name, str) or not name or name.startswith("\0"):
            continue  # TCP, or an abstract-namespace socket: no file
        if listener.protocol == router.PROTOCOL:
            paths.append(os.path.dirname(name))
        paths.append(name)
    return paths


def _abandon(config: AppServerConfig, listeners: list[Listener]) -> None:
    """Undo what start-up made before a fatal error: sockets and the pidfile."""
    private = next((item for item in listeners if item.protocol == router.PROTOCOL), None)
    directory = router.private_directory(private) if private is not None else None
    listeners_mod.close_all(listeners, config.vacuum)
    if directory is not None:
        router.remove_private_directory(directory)
    if config.pidfile:
        _remove_pidfile(config.pidfile)


def _daemonize() -> None:
    """Detach from the terminal (double fork); the original process exits 0."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)
