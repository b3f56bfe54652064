"""A worker process: a poller thread in front of ``threads`` handler threads.

Theory of operation
-------------------
The poller (the process's main thread) waits on the listening sockets, on idle
keep-alive HTTP connections and on a wake-up pipe.  It accepts a connection
only when a handler thread is free, so a busy worker leaves new connections in
the kernel's queue for its siblings instead of hoarding them.  With
``threads = 1`` the poller handles the request itself (no hand-off at all).

Signals (sent by the master): SIGTERM stops gracefully - stop accepting, finish
the requests in flight, close idle keep-alive connections, exit 0.  SIGINT
and SIGQUIT exit at once.  The master's scoreboard slot tells it the
worker's state and, per thread, what request is running since when
(harakiri) - see scoreboard.py.
"""

from __future__ import annotations

import itertools
import os
import queue
import selectors
import signal
import socket
import threading
import time
import traceback
from collections import deque
from typing import Any

from appserver import scoreboard as sb
from appserver.config import AppServerConfig
from appserver.connection import Handler, HttpConnection, WorkerContext
from appserver.environ import base_environ
from appserver.listeners import Listener, prepare_client, prepare_listener
from appserver.loader import WSGIApp
from appserver.log import emit as write_log
from appserver.log import request_formatter
from appserver.scoreboard import Scoreboard
from appserver.staticmap import StaticMap

_LISTENER = "listener"
# Connections accepted per wake-up of the poller, at most: enough to skip most
# select() calls under load, few enough that parked keep-alive clients get a turn.
ACCEPT_BATCH = 16
_WAKE = "wake"

# Exit codes the master reads.
EXIT_OK = 0
EXIT_APP_LOAD_FAILED = 4


class Worker:
    def __init__(
        self,
        config: AppServerConfig,
        app: WSGIApp,
        listeners: list[Listener],
        board: Scoreboard,
        slot: int,
        worker_id: int,
        notify_fd: int,
    ) -> None:
        self.config = config
        self.listeners = listeners
        self.board = board
        self.slot = slot
        self.worker_id = worker_id
        self.notify_fd = notify_fd
        self.selector = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.stopping = False
        self.listening = False
        self.idle_threads = config.threads
        self.idle_lock = threading.Lock()
        # Keep-alive connections handed back by handler threads (deque appends are atomic).
        self.returned: deque[HttpConnection] = deque()
        self.parked: dict[int, HttpConnection] = {}
        self.work: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        counter = itertools.count(1)
        self.max_requests = config.max_requests
        if self.max_requests:
            delta = config.max_requests_delta
            if delta is None:
                delta = max(config.max_requests // 10, 0)
            # Jitter, so that workers started together are not all recycled together.
            self.max_requests += (
                int.from_bytes(os.urandom(2), "little") % (delta + 1) if delta else 0
            )
        self.recycle_requested = False
        self.context = WorkerContext(
            app=app,
            base_environ=base_environ(
                multithread=config.threads > 1, multiprocess=config.processes > 1
            ),
            worker_id=worker_id,
            buffer_size=config.buffer_size,
            post_buffering=config.post_buffering,
            socket_timeout=float(config.socket_timeout),
            static_map=StaticMap(config.static_maps) if config.static_maps else None,
            format_request=None if config.disable_logging else request_formatter(config.log_format),
            count_request=counter.__next__,
        )
        self.handlers: list[Handler] = []
        # SERVER_NAME/SERVER_PORT of each HTTP listener, read once instead of per connection.
        self.server_names = {listener.address: listener.server_name_port for listener in listeners}

    # -- life cycle ----------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        for listener in self.listeners:
            prepare_listener(listener, self.context.socket_timeout)
        self.selector.register(self.wake_r, selectors.EVENT_READ, (_WAKE, None))
        self._listen(True)
        self.handlers = handlers = [
            Handler(self.context, self.board.core_slot(self.slot, core), core)
            for core in range(self.config.threads)
        ]
        if self.config.threads > 1:
            for handler in handlers:
                thread = threading.Thread(target=self._thread_main, args=(handler,), daemon=True)
                thread.start()
                self.threads.append(thread)
            inline = None
        else:
            inline = handlers[0]
        self.board.set_state(self.slot, sb.READY)
        self._notify()
        try:
            self._loop(inline)
        finally:
            self._shutdown()
        return EXIT_OK

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._handle_term)
        signal.signal(signal.SIGINT, self._handle_quit)
        signal.signal(signal.SIGQUIT, self._handle_quit)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)

    def _handle_term(self, signum: int, frame: Any) -> None:
        self.stopping = True
        self.context.stopping = True

    def _handle_quit(self, signum: int, frame: Any) -> None:
        os._exit(EXIT_OK)

    def _notify(self) -> None:
        try:
            os.write(self.notify_fd, bytes([self.slot]))
        except OSError:
            pass

    # -- the poller ----------------------------------------------------------

    def _listen(self, on: bool) -> None:
        if on == self.listening:
            return
        for listener in self.listeners:
            if on:
                self.selector.register(listener.sock, selectors.EVENT_READ, (_LISTENER, listener))
            else:
                self.selector.unregister(listener.sock)
        self.listening = on

    def _loop(self, inline: Handler | None) -> None:
        select = self.selector.select
        keepalive = self.config.http_keepalive
        next_sweep = time.monotonic() + 1.0
        while True:
            if self.stopping:
                self._listen(False)
                self._close_parked()
                if self.idle_threads == self.config.threads:
                    return  # nothing in flight
            for key, _ in select(1.0 if self.listening or self.parked else 0.2):
                kind, target = key.data
                if kind == _LISTENER:
                    # Under load the queue holds more than one connection: take them
                    # while a thread is free, without a select() between each.
                    for _ in range(ACCEPT_BATCH):
                        if self.stopping or self.idle_threads <= 0:
                            break
                        if not self._accept(target, inline):
                            break
                elif kind == _WAKE:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif inline is not None:
                    self._serve_parked_inline(inline, target)
                else:
                    self.selector.unregister(target.sock)
                    del self.parked[target.sock.fileno()]
                    self._dispatch(inline, ("keepalive", target))
            self._collect_returned()
            if not self.stopping:
                self._listen(self.idle_threads > 0)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + 1.0
                self._sweep_parked(now, keepalive)

    def _accept(self, listener: Listener, inline: Handler | None) -> bool:
        """Accept and serve (or hand off) one connection; False when none was waiting."""
        try:
            sock, peer = listener.sock.accept()
        except (BlockingIOError, InterruptedError):
            return False  # none left, or a sibling worker took it
        except OSError as exc:
            write_log(
                f"worker {self.worker_id}: accept() on {listener.display} failed: {exc.strerror}"
            )
            return False
        prepare_client(sock, listener, self.context.socket_timeout)
        kind = "http" if listener.protocol == "http" else "uwsgi"  # "router" speaks uwsgi
        self._dispatch(inline, (kind, sock, peer, listener))
        return True

    def _dispatch(self, inline: Handler | None, job: tuple[Any, ...]) -> None:
        if inline is not None:
            self._run_job(inline, job)
            self._collect_returned()
        else:
            with self.idle_lock:
                self.idle_threads -= 1
            self.work.put(job)

    def _serve_parked_inline(self, handler: Handler, connection: HttpConnection) -> None:
        """A keep-alive request with no handler threads: served here, and the
        connection stays registered if it stays open (two epoll_ctl calls less per
        request than parking it afresh)."""
        fd = connection.sock.fileno()
        self._run_job(handler, ("keepalive", connection))
        returned = self.returned
        if returned and returned[-1] is connection:
            returned.pop()
            return
        # Closed by the handler: the selector still knows it by the old descriptor.
        self.selector.unregister(connection.sock)
        del self.parked[fd]

    def _run_job(self, handler: Handler, job: tuple[Any, ...]) -> None:
        sock: socket.socket = job[1].sock if job[0] == "keepalive" else job[1]
        try:
            if job[0] == "uwsgi":
                handler.handle_uwsgi(sock, job[2])
                return
            if job[0] == "keepalive":
                connection: HttpConnection = job[1]
            else:
                name, port = self.server_names[job[3].address]
                connection = HttpConnection(
                    sock, job[2], name, port, max(self.config.buffer_size, 8192)
                )
            if handler.handle_http(connection):
                connection.idle_since = time.monotonic()
                self.returned.append(connection)
        except Exception:
            # Handler methods catch what a request can throw; reaching here is a server bug.
            # Log it, close the connection (no fd leaks) and keep the worker.
            write_log(
                f"worker {self.worker_id}: unexpected error:\n{traceback.format_exc().rstrip()}"
            )
            sock.close()
        finally:
            self._count_job()

    def _count_job(self) -> None:
        if not self.max_requests or self.recycle_requested:
            return
        if sum(handler.requests for handler in self.handlers) >= self.max_requests:
            self.recycle_requested = True
            self.board.set_state(self.slot, sb.RECYCLE, sb.RECYCLE_MAX_REQUESTS)
            self._notify()

    def _thread_main(self, handler: Handler) -> None:
        while True:
            job = self.work.get()
            if job is None:
                return
            self._run_job(handler, job)
            with self.idle_lock:
                self.idle_threads += 1
            try:
                os.write(self.wake_w, b"t")
            except OSError:
                pass

    def _collect_returned(self) -> None:
        returned = self.returned
        while returned:
            connection = returned.popleft()
            if self.stopping:
                connection.sock.close()
                continue
            self.parked[connection.sock.fileno()] = connection
            self.selector.register(connection.sock, selectors.EVENT_READ, ("parked", connection))

    def _sweep_parked(self, now: float, keepalive: int) -> None:
        expired = [c for c in self.parked.values() if now - c.idle_since > keepalive]
        for connection in expired:
            self.selector.unregister(connection.sock)
            del self.parked[connection.sock.fileno()]
            connection.sock.close()

    def _close_parked(self) -> None:
        for connection in self.parked.values():
            self.selector.unregister(connection.sock)
            connection.sock.close()
        self.parked.clear()

    def _shutdown(self) -> None:
        self.board.set_state(self.slot, sb.STOPPING)
        for _ in self.threads:
            self.work.put(None)
        for thread in self.threads:
            thread.join(timeout=self.config.worker_reload_mercy)
        self._close_parked()
