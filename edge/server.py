"""Listening sockets, the per-worker server state, and one worker's serving loop.

Theory of operation
-------------------
The master binds every ``listen`` address once, as ``slots`` sockets sharing
the port through ``SO_REUSEPORT`` (one per worker, so the kernel spreads new
connections over the workers instead of waking them all).  Workers inherit
the sockets by ``fork``; the master keeps its copies, so a socket, and the
connections queued on it, outlive any worker: a respawned worker or the next
generation after SIGHUP accepts from the very same queue, which is why a
reload drops nothing.  Worker ``i`` of ``n`` serves the sockets ``j`` with
``j % n == i`` (or shares socket ``i % slots`` when there are fewer sockets
than workers), so no socket is ever left without a worker.

A worker runs one event loop (uvloop when it imports) and one ``ServerState``:
the config, its router and handlers, limit zones (shared memory the master
made before forking, ``edge.shared_zones``), logs, and the live
connections and request tasks that a graceful stop waits for.  Signals only
set the stop mode (STYLE rule 6); the loop does the work.

A listen with ``ssl`` is served by the loop's own TLS (``create_server(ssl=)``,
uvloop's when it is in use) with the contexts of ``edge.tls``, which the
master built before forking.  The handshake is bound by the listen's default
server's ``client_header_timeout``, as nginx bounds it (its
``post_accept_timeout``).  The connection's protocol is chosen once the
handshake is done: ``edge.http2.Http2Connection`` when ALPN agreed on ``h2``,
else ``edge.protocol.HttpConnection``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from edge.config.schema import EdgeConfig, Listen
from edge.errorlog import ErrorLog, LogFile
from edge.http2 import Http2Connection
from edge.metrics import WorkerMetrics
from edge.observe import publish_forever
from edge.protocol import HttpConnection
from edge.shared_zones import SharedZones
from edge.state import ServerState
from edge.tls import ALPN_H2, TlsContexts

__all__ = ["ListenError", "ListenSockets", "ServerState", "Worker", "bind_listen", "run_worker"]

LISTEN_BACKLOG = 511  # nginx's default (NGX_LISTEN_BACKLOG); the kernel caps it at somaxconn
GRACEFUL_TIMEOUT = 30.0  # a graceful stop waits this long for busy connections
MASTER_CHECK_INTERVAL = 1.0

EXIT_OK = 0
EXIT_CONFIG = 1
EXIT_BOOT = 3  # a worker that cannot start: the master must not respawn it in a loop


class ListenError(Exception):
    """A listen address that cannot be bound; the message is one log line."""


@dataclass(slots=True)
class ListenSockets:
    """The sockets bound for one configured ``listen``."""

    listen: Listen
    sockets: list[socket.socket] = field(default_factory=list)
    reuseport: bool = False

    @property
    def bound(self) -> str:
        host, port = self.sockets[0].getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def for_worker(self, index: int, workers: int) -> list[socket.socket]:
        count = len(self.sockets)
        if count >= workers:
            return [sock for j, sock in enumerate(self.sockets) if j % workers == index]
        return [self.sockets[index % count]]

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


def _new_socket(family: socket.AddressFamily, reuseport: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # nginx's ipv6only=on
    except OSError:
        sock.close()
        raise
    return sock


def bind_listen(listen: Listen, slots: int, existing: ListenSockets | None = None) -> ListenSockets:
    """Bind ``listen`` as ``slots`` sockets (more are added to ``existing`` when it has fewer)."""
    if existing is not None and (len(existing.sockets) >= slots or not existing.reuseport):
        return existing
    try:
        infos = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot resolve listen address {listen}: {exc.strerror}") from None
    family, _type, _proto, _name, address = infos[0]
    reuseport = existing.reuseport if existing else slots > 1 and hasattr(socket, "SO_REUSEPORT")
    result = existing or ListenSockets(listen, reuseport=reuseport)
    wanted = slots if reuseport else 1
    created: list[socket.socket] = []
    try:
        while len(result.sockets) + len(created) < wanted:
            sock = _new_socket(family, reuseport)
            created.append(sock)
            if result.sockets or len(created) > 1:
                # Port 0 was resolved by the first bind: the others join that port.
                port = (result.sockets or created)[0].getsockname()[1]
                sock.bind((address[0], port, *address[2:]))
            else:
                sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in created:
            sock.close()
        raise ListenError(f"bind() to {listen} failed ({exc.errno}: {exc.strerror})") from None
    result.sockets.extend(created)
    return result


# --- one worker process ------------------------------------------------------------------


class AlpnSwitch(asyncio.Protocol):
    """A TLS connection until its handshake is done: then HTTP/2 or HTTP/1, as ALPN chose.

    The loop calls ``connection_made`` once the handshake has completed; the
    protocol that will serve the connection takes the transport over there.
    """

    def __init__(self, state: ServerState, listen: Listen) -> None:
        self.state = state
        self.listen = listen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        protocol: asyncio.Protocol
        if chosen == ALPN_H2:
            protocol = Http2Connection(self.state, self.listen)
        else:
            protocol = HttpConnection(self.state, self.listen)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # only before connection_made, which hands the transport on


def protocol_factory(state: ServerState, listen: Listen) -> Callable[[], asyncio.Protocol]:
    if listen.http2:
        return partial(AlpnSwitch, state, listen)
    return partial(HttpConnection, state, listen)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it imports (uvicorn's loops/auto.py), else the stdlib loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Worker:
    """Serves the given sockets until told to stop (SIGQUIT graceful, SIGTERM/SIGINT fast)."""

    def __init__(
        self,
        config: EdgeConfig,
        listeners: list[tuple[Listen, list[socket.socket]]],
        *,
        error_log: ErrorLog,
        access_log: LogFile | None,
        notify: Callable[[], None] | None = None,
        master_pid: int | None = None,
        zones: SharedZones | None = None,
        tls: TlsContexts | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.config = config
        self.zones = zones
        self.metrics = metrics  # the master's shared block and this worker's slot
        # The master builds the TLS contexts before forking (shared ticket keys); a
        # worker started on its own builds them from the config's files.
        self.tls = tls
        self.listeners = listeners
        self.error_log = error_log
        self.access_log = access_log
        self.notify = notify
        self.master_pid = master_pid
        self.stop_mode: str | None = None
        self.state: ServerState | None = None
        self._stop = asyncio.Event()
        self._fast = asyncio.Event()
        self._servers: list[asyncio.base_events.Server] = []

    def request_stop(self, mode: str) -> None:
        """Signal handlers call this: it only records the request (STYLE rule 6)."""
        if self.stop_mode != "fast":
            self.stop_mode = mode
        if mode == "fast":
            self._fast.set()
        self._stop.set()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """Errors the loop catches (in protocol callbacks) go to the error log, not stderr."""
        exc = context.get("exception")
        message = str(context.get("message") or "unhandled error in the event loop")
        self.error_log.log("alert", message, exc=exc if isinstance(exc, BaseException) else None)

    def _reopen_logs(self) -> None:
        self.error_log.reopen()
        if self.access_log is not None:
            self.access_log.reopen()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        state = ServerState(
            self.config,
            error_log=self.error_log,
            access_log=self.access_log,
            zones=self.zones,
            metrics=self.metrics,
        )
        self.state = state
        try:
            await state.handlers.start()
            tls = self.tls if self.tls is not None else TlsContexts.build(self.config)
            for listen, sockets in self.listeners:
                listen_tls = tls.for_listen(listen)
                # Before the Host header is known, the listen's default server decides.
                defaults = state.router.server_for(listen.host, listen.port, None)
                for sock in sockets:
                    if listen_tls is None:
                        server = await loop.create_server(
                            protocol_factory(state, listen), sock=sock, backlog=LISTEN_BACKLOG
                        )
                    else:
                        server = await loop.create_server(
                            protocol_factory(state, listen),
                            sock=sock,
                            backlog=LISTEN_BACKLOG,
                            ssl=listen_tls.context,
                            ssl_handshake_timeout=defaults.client_header_timeout or None,
                        )
                    self._servers.append(server)
        except Exception as exc:  # the worker's boot boundary: report, exit with EXIT_BOOT
            self.error_log.log("emerg", f"worker failed to start: {exc!r}", exc=exc, always=True)
            return EXIT_BOOT
        for signum, mode in (
            (signal.SIGTERM, "fast"),
            (signal.SIGINT, "fast"),
            (signal.SIGQUIT, "graceful"),
        ):
            loop.add_signal_handler(signum, self.request_stop, mode)
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the master reloads, not us
        if self.notify is not None:
            self.notify()
        watchdog = loop.create_task(self._watch_master()) if self.master_pid else None
        publisher = loop.create_task(publish_forever(state))
        await self._stop.wait()
        publisher.cancel()
        if watchdog is not None:
            watchdog.cancel()
        await self._shutdown(state, graceful=self.stop_mode == "graceful")
        return EXIT_OK

    async def _watch_master(self) -> None:
        # Without a master nobody would ever stop or reload us: leave gracefully.
        while True:
            await asyncio.sleep(MASTER_CHECK_INTERVAL)
            if os.getppid() != self.master_pid:
                self.error_log.log("alert", "the master process is gone; stopping", always=True)
                self.request_stop("graceful")
                return

    async def _shutdown(self, state: ServerState, *, graceful: bool) -> None:
        state.stopping = True
        for server in self._servers:
            server.close()
        if graceful:
            state.idle_event = asyncio.Event()
            for conn in list(state.connections):
                conn.shutdown()
            if state.connections:
                idle = asyncio.ensure_future(state.idle_event.wait())
                fast = asyncio.ensure_future(self._fast.wait())
                done, pending = await asyncio.wait(
                    (idle, fast), timeout=GRACEFUL_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
                )
                for future in pending:
                    future.cancel()
                if not done:
                    self.error_log.log(
                        "warn",
                        f"graceful stop: {len(state.connections)} connections still busy "
                        f"after {GRACEFUL_TIMEOUT:.0f}s, closing them",
                    )
        for conn in list(state.connections):
            conn.abort()
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.gather(*state.tasks, return_exceptions=True)
        await state.handlers.close()


def run_worker(worker: Worker) -> int:
    """Run ``worker`` on a fresh event loop; the process's exit code."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(worker.run())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
