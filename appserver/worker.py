"""A worker process: a poller thread in front of ``threads`` handler threads.

Theory of operation
-------------------
The poller (the process's main thread) waits on the listening sockets, on idle
keep-alive connections (HTTP, and uwsgi ones that took the WSGISTACK_KEEPALIVE
offer) and on a wake-up pipe.  It accepts a connection only when a handler
thread is free, so a busy worker leaves new connections in the kernel's queue
for its siblings instead of hoarding them.  What it queues for the threads is
the connection itself (``ClientConnection``): a new one, or a parked one whose
next request has arrived.  A thread serves it (``Handler.serve``) and hands it
back to be parked if it may be kept.  With ``threads = 1`` the poller serves
the connection itself (no hand-off at all).

Signals (sent by the master): SIGTERM stops gracefully - stop accepting, finish
the requests in flight, close idle keep-alive connections, exit 0.  SIGINT
and SIGQUIT exit at once.  The master's scoreboard slot tells it the
worker's state and, per thread, what request is running since when
(harakiri) - see scoreboard.py.

max-requests: the request that reaches the limit turns the worker to
draining.  It stops accepting and closes its idle kept connections, every
response from then on closes its connection, and the master's replacement
takes over; the worker exits when the master stops it.  Only the requests
already running on other threads or already accepted finish, so a worker
serves at most max-requests (with its jitter) + threads - 1 requests.
"""

from __future__ import annotations

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
from appserver.connection import ClientConnection, Endpoint, WorkerContext
from appserver.environ import base_environ
from appserver.handler import Handler
from appserver.listeners import Listener, prepare_client, prepare_listener
from appserver.loader import WSGIApp
from appserver.log import emit as write_log
from appserver.log import request_formatter
from appserver.scoreboard import Scoreboard
from appserver.staticmap import StaticMap

# Connections accepted per wake-up of the poller, at most: enough to skip most
# select() calls under load, few enough that parked keep-alive clients get a turn.
ACCEPT_BATCH = 16

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
        self.returned: deque[ClientConnection] = deque()
        self.parked: dict[int, ClientConnection] = {}
        self.work: queue.SimpleQueue[ClientConnection | None] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.max_requests = config.max_requests
        if self.max_requests:
            delta = config.max_requests_delta
            if delta is None:
                delta = max(config.max_requests // 10, 0)
            # Jitter, so that workers started together are not all recycled together.
            self.max_requests += (
                int.from_bytes(os.urandom(2), "little") % (delta + 1) if delta else 0
            )
        self.context = WorkerContext(
            app=app,
            base_environ=base_environ(
                multithread=config.threads > 1, multiprocess=config.processes > 1
            ),
            worker_id=worker_id,
            buffer_size=config.buffer_size,
            post_buffering=config.post_buffering,
            socket_timeout=float(config.socket_timeout),
            header_timeout=float(config.request_header_timeout),
            body_timeout=float(config.request_body_timeout),
            keepalive=config.http_keepalive,
            static_map=StaticMap(config.static_maps) if config.static_maps else None,
            format_request=None if config.disable_logging else request_formatter(config.log_format),
            max_requests=self.max_requests,
            on_max_requests=self._reached_max_requests,
        )
        self.endpoints = [Endpoint(listener, self.context) for listener in listeners]
        self.handlers: list[Handler] = []

    # -- life cycle ----------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        for listener in self.listeners:
            prepare_listener(listener, self.context.socket_timeout)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)
        self._listen(True)
        histogram = self.config.metrics_http is not None  # someone reads the durations
        self.handlers = handlers = [
            Handler(self.context, self.board.core_slot(self.slot, core, histogram=histogram), core)
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
        self.context.draining = True

    def _handle_quit(self, signum: int, frame: Any) -> None:
        os._exit(EXIT_OK)

    def _notify(self) -> None:
        try:
            os.write(self.notify_fd, bytes([self.slot]))
        except OSError:
            pass

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"t")
        except OSError:
            pass

    def _reached_max_requests(self) -> None:
        """Called by the thread whose request reached max-requests (the context is draining)."""
        self.board.set_state(self.slot, sb.RECYCLE, sb.RECYCLE_MAX_REQUESTS)
        self._notify()
        self._wake()  # the poller stops accepting and closes the parked connections

    # -- the poller ----------------------------------------------------------

    def _listen(self, on: bool) -> None:
        if on == self.listening:
            return
        for endpoint in self.endpoints:
            if on:
                self.selector.register(endpoint.sock, selectors.EVENT_READ, endpoint)
            else:
                self.selector.unregister(endpoint.sock)
        self.listening = on

    def _loop(self, inline: Handler | None) -> None:
        select = self.selector.select
        context = self.context
        next_sweep = time.monotonic() + 1.0
        while True:
            if context.draining:
                self._listen(False)
                self._close_parked()
                if self.stopping and self.idle_threads == self.config.threads:
                    return  # nothing in flight
            for key, _ in select(1.0 if self.listening or self.parked else 0.2):
                target = key.data
                if type(target) is Endpoint:
                    # Under load the queue holds more than one connection: take them
                    # while a thread is free, without a select() between each.
                    for _ in range(ACCEPT_BATCH):
                        if not self._accept(target, inline):
                            break
                elif target is None:  # the wake-up pipe
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                elif inline is not None:
                    self._serve_parked_inline(inline, target)
                else:
                    self._resume(target)
            self._collect_returned()
            if not context.draining:
                self._listen(self.idle_threads > 0)
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + 1.0
                self._sweep_parked(now, context.keepalive)

    def _accept(self, endpoint: Endpoint, inline: Handler | None) -> bool:
        """Accept and serve (or hand off) one connection; False when no more may be taken."""
        if inline is None:
            # Under the lock that admit() takes when max-requests is reached, so that
            # no connection is accepted once the worker drains.
            with self.idle_lock:
                if self.context.draining or self.idle_threads <= 0:
                    return False
                connection = self._take(endpoint)
                if connection is None:
                    return False
                self.idle_threads -= 1
            self.work.put(connection)
            return True
        if self.context.draining:
            return False
        connection = self._take(endpoint)
        if connection is None:
            return False
        self._serve_inline(inline, connection)
        return True

    def _take(self, endpoint: Endpoint) -> ClientConnection | None:
        try:
            # socket.accept() without its wrapper: it builds two enum members (family,
            # type) per call; the endpoint knows them as ints.
            fd, peer = endpoint.sock._accept()  # type: ignore[attr-defined]
        except (BlockingIOError, InterruptedError):
            return None  # none left, or a sibling worker took it
        except OSError as exc:
            write_log(
                f"worker {self.worker_id}: accept() on {endpoint.listener.display} failed: "
                f"{exc.strerror}"
            )
            return None
        sock = socket.socket(endpoint.family, socket.SOCK_STREAM, 0, fd)
        if not endpoint.listener.inherits_client_options:
            prepare_client(sock, endpoint.listener, self.context.socket_timeout)
        return endpoint.connection(sock, peer)

    def _resume(self, connection: ClientConnection) -> None:
        """A parked connection's next request has arrived: hand it to a thread."""
        self.selector.unregister(connection.sock)
        del self.parked[connection.sock.fileno()]
        with self.idle_lock:
            if self.context.draining:
                connection.close()  # as at a graceful stop: the client reconnects
                return
            self.idle_threads -= 1
        self.work.put(connection)

    def _serve_inline(self, handler: Handler, connection: ClientConnection) -> None:
        if self._run(handler, connection):
            self._park(connection)

    def _serve_parked_inline(self, handler: Handler, connection: ClientConnection) -> None:
        """A keep-alive request with no handler threads: served here, and the
        connection stays registered if it stays open (two epoll_ctl calls less per
        request than parking it afresh)."""
        fd = connection.sock.fileno()
        if self._run(handler, connection) and not self.context.draining:
            connection.idle_since = time.monotonic()
            return
        # Closed by the handler: the selector still knows it by the old descriptor.
        self.selector.unregister(fd)
        del self.parked[fd]
        if connection.sock.fileno() >= 0:
            connection.close()

    def _run(self, handler: Handler, connection: ClientConnection) -> bool:
        """Serve a connection; True when it is to be parked."""
        try:
            return handler.serve(connection)
        except Exception:
            # Handlers catch what a request can throw; reaching here is a server bug.
            # Log it, close the connection (no fd leaks) and keep the worker.
            write_log(
                f"worker {self.worker_id}: unexpected error:\n{traceback.format_exc().rstrip()}"
            )
            connection.sock.close()
            return False

    def _thread_main(self, handler: Handler) -> None:
        while True:
            connection = self.work.get()
            if connection is None:
                return
            if self._run(handler, connection):
                connection.idle_since = time.monotonic()
                self.returned.append(connection)
            with self.idle_lock:
                self.idle_threads += 1
            self._wake()

    def _park(self, connection: ClientConnection) -> None:
        if self.stopping or self.context.draining:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self.parked[connection.sock.fileno()] = connection
        self.selector.register(connection.sock, selectors.EVENT_READ, connection)

    def _collect_returned(self) -> None:
        returned = self.returned
        while returned:
            self._park(returned.popleft())

    def _sweep_parked(self, now: float, keepalive: int) -> None:
        expired = [c for c in self.parked.values() if now - c.idle_since > keepalive]
        for connection in expired:
            self.selector.unregister(connection.sock)
            del self.parked[connection.sock.fileno()]
            connection.close()

    def _close_parked(self) -> None:
        for connection in self.parked.values():
            self.selector.unregister(connection.sock)
            connection.close()
        self.parked.clear()

    def _shutdown(self) -> None:
        self.board.set_state(self.slot, sb.STOPPING)
        for _ in self.threads:
            self.work.put(None)
        for thread in self.threads:
            thread.join(timeout=self.config.worker_reload_mercy)
        self._close_parked()
