"""The master process: binds the listeners, forks the workers, keeps them alive, reloads.

Theory of operation
-------------------
The master never serves a request and never runs an event loop.  It binds
each ``listen`` (``edge.server.bind_listen``), forks ``worker_processes``
workers that inherit the sockets, then sleeps in ``select()`` on two pipes:
signals arrive through ``signal.set_wakeup_fd`` and a queue (handlers only
enqueue, as in gunicorn), and each worker writes its pid to the notify pipe
once it is accepting.  Workers are grouped in *generations*, one per config:

- SIGHUP (reload): read the config file again.  Errors are logged and the
  reload is refused: the running generation keeps serving, untouched.  A good
  config gets its log files and any new listeners, then a new generation is
  forked; when all of its workers are accepting (or after
  ``RELOAD_READY_TIMEOUT``), the old generation gets SIGQUIT and finishes its
  requests.  Both generations accept from the same sockets meanwhile, so no
  connection is refused or reset.  If a new worker cannot boot, the new
  generation is stopped and the old one stays.
- SIGTERM / SIGINT: fast stop (workers close everything; SIGKILL after
  ``FAST_STOP_GRACE``).  SIGQUIT: graceful stop (workers finish their
  requests).  These are nginx's meanings.
- SIGUSR1: reopen log files, here and in every worker (logrotate).

Each generation also owns its ``limit_req`` / ``limit_conn`` zones, made in
shared memory before its workers fork (``edge.shared_zones``), so all workers
count against one zone as in nginx.  A reload hands the new generation the
very same zones when their name and size are unchanged: counters survive it.

The counters of ``edge.metrics`` live in one shared block made before the
first fork: each worker process gets a slot of it when spawned, and when it
is reaped its counts move into the block's retained totals, so a respawn or
a reload neither resets nor doubles them.

A worker that dies unexpectedly is logged with its pid and exit status and
respawned (after a pause if it died young, so a crash loop is not a fork
loop).  A worker that exits with ``EXIT_BOOT`` before it ever accepted cannot
start at all: the master stops instead of respawning it forever.

The wake and notify pipes, reaping and the respawn back-off are the
``prefork`` kernel, shared with appserver's master.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

from edge.config.load import ConfigErrors, load_config
from edge.config.schema import EdgeConfig, Listen
from edge.errorlog import ErrorLog, LogFile
from edge.metrics import (
    LAST_RELOAD,
    RELOAD_FAILURES,
    RELOADS,
    RESTARTS,
    MetricsBlock,
    WorkerMetrics,
    slot_count,
)
from edge.server import (
    EXIT_BOOT,
    EXIT_CONFIG,
    EXIT_OK,
    GRACEFUL_TIMEOUT,
    ListenError,
    ListenSockets,
    Worker,
    bind_listen,
    run_worker,
)
from edge.shared_zones import SharedZones
from edge.tls import TlsConfigError, TlsContexts
from prefork import ExitStatus, RespawnSchedule, Supervisor, fork_child, reap, send_signal

RELOAD_READY_TIMEOUT = 10.0
FAST_STOP_GRACE = 5.0
TICK = 1.0

_HANDLED = (
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGCHLD,
)
_WORKER_STOP_SIGNALS = {signal.SIGTERM: "fast", signal.SIGINT: "fast", signal.SIGQUIT: "graceful"}


def worker_count(config: EdgeConfig, override: int | None = None) -> int:
    """``worker_processes``, with ``auto`` = the CPUs this process may run on."""
    if override is not None:
        return override
    if config.worker_processes == "auto":
        try:
            return len(os.sched_getaffinity(0)) or 1
        except AttributeError:  # not Linux
            return os.cpu_count() or 1
    return config.worker_processes


def _listens(config: EdgeConfig) -> list[Listen]:
    seen: dict[Listen, None] = {}
    for server in config.servers:
        for listen in server.listen:
            seen.setdefault(listen)
    return list(seen)


@dataclass(slots=True)
class Generation:
    """Workers started with one config, and the log files they write to."""

    number: int
    config: EdgeConfig
    workers: int
    error_log: ErrorLog
    access_log: LogFile | None
    zones: SharedZones  # limit zones in shared memory, made before the workers fork
    tls: TlsContexts  # read from the certificate files when the generation opens

    def close_logs(self) -> None:
        self.error_log.file.close()
        if self.access_log is not None:
            self.access_log.close()


@dataclass(slots=True)
class WorkerProcess:
    pid: int
    index: int  # 0-based slot; users see index + 1
    generation: int
    spawned_at: float
    ready: bool = False
    retiring: bool = False  # told to stop: its exit is expected
    slot: int = -1  # its cells in the metrics block


@dataclass(slots=True)
class PendingReload:
    new: int
    old: int
    deadline: float
    added: list[tuple[ListenSockets, int]]  # sockets bound for it: (listener, first new index)


def open_generation(
    number: int, config: EdgeConfig, workers: int, previous: SharedZones | None = None
) -> Generation:
    """Open the config's log files (OSError when a path cannot be opened) and its limit
    zones, keeping ``previous``'s state for the zones a reload keeps (same name and size),
    and its TLS contexts from the certificate files (``TlsConfigError`` names a bad one)."""
    error_log = ErrorLog(config.error_log)
    try:
        tls = TlsContexts.build(config)
        access_log = LogFile(config.access_log.path) if config.access_log.path else None
        zones = SharedZones.build(config, previous)
    except (OSError, TlsConfigError):
        error_log.file.close()
        raise
    return Generation(number, config, workers, error_log, access_log, zones, tls)


class Master:
    def __init__(self, config: EdgeConfig, *, workers: int | None = None) -> None:
        self.initial_config = config
        self.workers_override = workers
        self.listeners: dict[Listen, ListenSockets] = {}
        self.processes: dict[int, WorkerProcess] = {}
        self.generations: dict[int, Generation] = {}
        self.current: Generation | None = None
        self.pending: PendingReload | None = None
        self.supervisor: Supervisor | None = None  # made once the listeners are bound
        self.stopping: str | None = None
        self.stop_deadline = 0.0
        self.respawn: RespawnSchedule[int] = RespawnSchedule()  # by worker index
        self.exit_code = EXIT_OK
        self.pid = os.getpid()
        self._notify_buffer = b""
        self.metrics: MetricsBlock | None = None  # made before the first fork

    # -- logging -------------------------------------------------------------------

    @property
    def log(self) -> ErrorLog:
        assert self.current is not None
        return self.current.error_log

    def notice(self, message: str) -> None:
        self.log.log("notice", message, always=True)

    # -- start ---------------------------------------------------------------------

    def run(self) -> int:
        config = self.initial_config
        try:
            self.current = open_generation(1, config, worker_count(config, self.workers_override))
        except TlsConfigError as exc:
            print(f"edge: {exc}", file=sys.stderr, flush=True)
            return EXIT_CONFIG
        except OSError as exc:
            if exc.filename:
                print(
                    f"edge: cannot open log file {exc.filename}: {exc.strerror}",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                print(f"edge: cannot create the limit zones: {exc}", file=sys.stderr, flush=True)
            return EXIT_CONFIG
        self.generations[1] = self.current
        self.metrics = MetricsBlock(slot_count(self.current.workers))
        self.metrics.layout.register(config)
        self.metrics.set(LAST_RELOAD, int(time.time() * 1000))
        try:
            self._bind(config, self.current.workers)
        except ListenError as exc:
            self.log.log("emerg", str(exc), always=True)
            return EXIT_BOOT
        self.supervisor = Supervisor()
        # nginx's SIGUSR2 (binary upgrade) and SIGWINCH have no meaning here: ignore
        # them rather than let their default action kill the master.
        self.supervisor.install(_HANDLED, ignored=(signal.SIGUSR2, signal.SIGWINCH))
        self.notice(f"edge master process started (pid {self.pid}), {self.current.workers} workers")
        for index in range(self.current.workers):
            self._spawn(index, self.current)
        try:
            return self._loop()
        finally:
            self.supervisor.close()
            for listeners in self.listeners.values():
                listeners.close()

    def _bind(self, config: EdgeConfig, workers: int) -> list[tuple[ListenSockets, int]]:
        """Bind what ``config`` listens on and is not bound yet; all or nothing."""
        added: list[tuple[ListenSockets, int]] = []
        try:
            for listen in _listens(config):
                existing = self.listeners.get(listen)
                before = len(existing.sockets) if existing is not None else 0
                listeners = bind_listen(listen, workers, existing)
                if existing is None:
                    self.listeners[listen] = listeners
                    added.append((listeners, 0))
                elif len(listeners.sockets) > before:
                    added.append((listeners, before))
        except ListenError:
            self._unbind(added)
            raise
        for listeners, first in added:
            if first == 0:
                self.notice(f"listening on {listeners.listen.scheme}://{listeners.bound}")
        return added

    def _unbind(self, added: list[tuple[ListenSockets, int]]) -> None:
        for listeners, first in added:
            for sock in listeners.sockets[first:]:
                sock.close()
            del listeners.sockets[first:]
            if not listeners.sockets:
                self.listeners.pop(listeners.listen, None)

    # -- workers ---------------------------------------------------------------------

    def _spawn(self, index: int, generation: Generation) -> None:
        # The generation's own Listen: a reload may change an address's options (ssl).
        listeners = [
            (listen, self.listeners[listen].for_worker(index, generation.workers))
            for listen in _listens(generation.config)
        ]

        def crashed(exc: BaseException) -> None:
            generation.error_log.log("emerg", f"worker crashed: {exc!r}", exc=exc, always=True)

        assert self.metrics is not None
        slot = self.metrics.claim()
        if slot < 0:
            self.log.log("alert", "no metrics slot left: this worker's counts are lost")
        pid = fork_child(
            lambda: self._become_worker(generation, listeners, slot),
            on_crash=crashed,
            crash_code=EXIT_BOOT,
        )
        self.metrics.assign(slot, pid)
        self.processes[pid] = WorkerProcess(
            pid, index, generation.number, time.monotonic(), slot=slot
        )
        self.notice(f"spawned worker {index + 1} (pid {pid})")

    def _become_worker(
        self,
        generation: Generation,
        listeners: list[tuple[Listen, list[socket.socket]]],
        slot: int,
    ) -> int:
        # Until the worker's loop installs its handlers, remember stop signals rather
        # than die of their default action (SIGQUIT would dump core).
        early: list[int] = []
        for signum in _HANDLED:
            signal.signal(signum, signal.SIG_DFL)
        for signum in _WORKER_STOP_SIGNALS:
            signal.signal(signum, lambda number, frame: early.append(number))
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert self.supervisor is not None
        self.supervisor.enter_child()
        mine = {id(sock) for _listen, sockets in listeners for sock in sockets}
        for bound in self.listeners.values():
            for sock in bound.sockets:
                if id(sock) not in mine:
                    sock.close()
        for number, other in self.generations.items():
            if number != generation.number:
                other.close_logs()
        notify_w = self.supervisor.notify_w

        def notify() -> None:
            os.write(notify_w, b"%d\n" % os.getpid())
            for number in early:
                worker.request_stop(_WORKER_STOP_SIGNALS[signal.Signals(number)])

        worker = Worker(
            generation.config,
            listeners,
            error_log=generation.error_log,
            access_log=generation.access_log,
            notify=notify,
            master_pid=self.pid,
            zones=generation.zones,
            tls=generation.tls,
            metrics=WorkerMetrics(generation.config, self.metrics, slot, generation.number),
        )
        return run_worker(worker)

    def _loop(self) -> int:
        assert self.supervisor is not None
        supervisor = self.supervisor
        while True:
            supervisor.wait(TICK)
            self._read_notifications(supervisor.read_notifications())
            while supervisor.signals:
                self._handle_signal(supervisor.signals.popleft())
            for pid, status in reap():
                self._worker_exited(pid, status)
            self._tick()
            if self.stopping and not self.processes:
                self.notice("exiting")
                return self.exit_code

    def _read_notifications(self, data: bytes) -> None:
        """Each worker writes its pid and a newline once it is accepting."""
        self._notify_buffer += data
        *lines, self._notify_buffer = self._notify_buffer.split(b"\n")
        for line in lines:
            process = self.processes.get(int(line)) if line.isdigit() else None
            if process is not None:
                process.ready = True

    # -- signals ---------------------------------------------------------------------

    def _handle_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self._reload()
        elif signum in (signal.SIGTERM, signal.SIGINT):
            self._stop("fast", signal.Signals(signum).name)
        elif signum == signal.SIGQUIT:
            self._stop("graceful", "SIGQUIT")
        elif signum == signal.SIGUSR1:
            self.notice("reopening logs")
            for generation in self.generations.values():
                generation.error_log.reopen()
                if generation.access_log is not None:
                    generation.access_log.reopen()
            self._signal_workers(signal.SIGUSR1)

    def _signal_workers(self, signum: int, generation: int | None = None) -> None:
        for process in list(self.processes.values()):
            if generation is None or process.generation == generation:
                send_signal(process.pid, signum)

    def _stop(self, mode: str, reason: str) -> None:
        if self.stopping == "fast" or self.stopping == mode:
            return
        self.stopping = mode
        self.respawn.clear()
        if mode == "fast":
            self.notice(f"received {reason}: fast stop")
            self._signal_workers(signal.SIGTERM)
            self.stop_deadline = time.monotonic() + FAST_STOP_GRACE
        else:
            self.notice(f"received {reason}: graceful stop, waiting for requests in progress")
            self._signal_workers(signal.SIGQUIT)
            self.stop_deadline = time.monotonic() + GRACEFUL_TIMEOUT + FAST_STOP_GRACE

    # -- reload ----------------------------------------------------------------------

    def _reload(self) -> None:
        assert self.current is not None
        if self.stopping:
            return
        if self.pending is not None:
            self.notice("received SIGHUP while a reload is in progress: ignored")
            return
        old = self.current
        source = old.config.source
        self.notice(f"received SIGHUP: reloading {source or 'the command-line configuration'}")
        config = old.config
        if source is not None:
            try:
                config = load_config(source)
            except ConfigErrors as exc:
                for line in exc.lines(str(source)):
                    self.log.log("emerg", line, always=True)
                self.log.log(
                    "alert",
                    "reload refused: the new configuration has errors; the old one keeps serving",
                    always=True,
                )
                self._count(RELOAD_FAILURES)
                return
        workers = worker_count(config, self.workers_override)
        try:
            generation = open_generation(old.number + 1, config, workers, old.zones)
        except TlsConfigError as exc:
            self.log.log("emerg", f"reload refused: {exc}", always=True)
            self._count(RELOAD_FAILURES)
            return
        except OSError as exc:
            self.log.log(
                "emerg",
                f"reload refused: cannot open log file {exc.filename}: {exc.strerror}"
                if exc.filename
                else f"reload refused: cannot create the limit zones: {exc}",
                always=True,
            )
            self._count(RELOAD_FAILURES)
            return
        try:
            added = self._bind(config, workers)
        except ListenError as exc:
            generation.close_logs()
            self.log.log("emerg", f"reload refused: {exc}", always=True)
            self._count(RELOAD_FAILURES)
            return
        assert self.metrics is not None
        self.metrics.layout.register(config)  # before the fork: its workers inherit it
        self.generations[generation.number] = generation
        self.current = generation
        self.pending = PendingReload(
            generation.number, old.number, time.monotonic() + RELOAD_READY_TIMEOUT, added
        )
        for index in range(workers):
            self._spawn(index, generation)

    def _finish_reload(self) -> None:
        """The new generation accepts: stop the old one gracefully, drop unused listeners."""
        assert self.pending is not None and self.current is not None
        pending, self.pending = self.pending, None
        retiring = 0
        for process in self.processes.values():
            if process.generation != self.current.number and not process.retiring:
                process.retiring = True
                retiring += 1
                send_signal(process.pid, signal.SIGQUIT)
        wanted = set(_listens(self.current.config))
        for listen in list(self.listeners):
            if listen not in wanted:
                bound = self.listeners[listen]
                self.notice(f"no longer listening on {bound.listen.scheme}://{bound.bound}")
                self.listeners.pop(listen).close()
        self._count(RELOADS)
        if self.metrics is not None:
            self.metrics.set(LAST_RELOAD, int(time.time() * 1000))
        self.notice(
            f"reload complete: configuration {pending.new} is serving, "
            f"{retiring} old workers are finishing their requests"
        )
        self._forget_generations()

    def _abort_reload(self) -> None:
        """A worker of the new generation could not boot: keep the old generation."""
        assert self.pending is not None
        pending, self.pending = self.pending, None
        for process in self.processes.values():
            if process.generation == pending.new:
                process.retiring = True
                send_signal(process.pid, signal.SIGTERM)
        self._unbind(pending.added)
        self.current = self.generations[pending.old]
        self.log.log(
            "alert",
            "reload failed: a new worker could not start; the old workers keep serving",
            always=True,
        )
        self._count(RELOAD_FAILURES)

    def _forget_generations(self) -> None:
        assert self.current is not None
        alive = {process.generation for process in self.processes.values()}
        for number in list(self.generations):
            if number != self.current.number and number not in alive:
                if self.pending is None or number not in (self.pending.new, self.pending.old):
                    self.generations.pop(number).close_logs()

    # -- children ----------------------------------------------------------------------

    def _worker_exited(self, pid: int, status: ExitStatus) -> None:
        assert self.current is not None
        process = self.processes.pop(pid, None)
        if process is None:
            return
        if self.metrics is not None:
            self.metrics.release(process.slot)  # its counts join the retained totals
        if status.signal is not None:
            how = f"exited on signal {status.signal} ({status.signal_name})"
            code = -status.signal
        else:
            code = status.code if status.code is not None else 0
            how = f"exited with code {code}"
        expected = process.retiring or self.stopping is not None
        level = "notice" if expected and code == 0 else "alert"
        self.log.log(level, f"worker process {pid} {how}", always=True)
        if expected:
            self._forget_generations()
            return
        pending = self.pending
        if code == EXIT_BOOT and not process.ready:
            if pending is not None and process.generation == pending.new:
                self._abort_reload()
                self._forget_generations()
                return
            self.log.log("emerg", "a worker cannot start; stopping edge", always=True)
            self.exit_code = EXIT_BOOT
            self._stop("fast", "a boot failure")
            return
        if process.generation != self.current.number:
            return  # the old generation during a reload: the new one takes over
        if process.index >= self.current.workers:
            return
        self._count(RESTARTS)
        self.respawn.schedule(process.index, process.spawned_at, time.monotonic())

    def _count(self, cell: int) -> None:
        if self.metrics is not None:
            self.metrics.add(cell)

    def _tick(self) -> None:
        assert self.current is not None
        now = time.monotonic()
        if not self.stopping:
            for index in self.respawn.due(now):
                self._spawn(index, self.current)
        pending = self.pending
        if pending is not None:
            ready = sum(
                1
                for process in self.processes.values()
                if process.generation == pending.new and process.ready
            )
            if ready >= self.current.workers or now >= pending.deadline:
                self._finish_reload()
        if self.stopping and self.processes and now >= self.stop_deadline:
            for process in list(self.processes.values()):
                self.log.log(
                    "alert", f"worker process {process.pid} did not stop: killing it", always=True
                )
                send_signal(process.pid, signal.SIGKILL)
            self.stop_deadline = now + FAST_STOP_GRACE
