"""What every connection of one worker shares: the ``ServerState``.

Built once per worker and config (a reload starts new workers): the config,
its router and handlers, the limit zones (shared memory the master made
before forking, ``edge.shared_zones``, or private ones in a process of its
own), the logs, and the live connections and request tasks that a graceful
stop waits for.  The request logic itself lives in ``edge.pipeline``; the
state only knows connections through the small ``Connection`` protocol, so
``edge.protocol`` (the HTTP/1 transport) and ``edge.server`` (the worker)
depend on this module and never on each other.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Protocol

from edge.accesslog import AccessEntry, AccessLogFormatter
from edge.config.schema import EdgeConfig
from edge.errorlog import ErrorLog, LogFile
from edge.handlers import HandlerRegistry
from edge.limits import ConnectionCountZone, RequestRateZone
from edge.metrics import ACCEPTED, HANDLED, WorkerMetrics
from edge.pipeline import Pipeline
from edge.routing import Router
from edge.shared_zones import SharedZones
from httpproto import http_date

# Connection phases (see edge.protocol).  worker_connections reclaims LINGER, then
# IDLE, then HEAD connections; a graceful stop closes IDLE ones after a short grace.
IDLE, HEAD, REQUEST, LINGER, CLOSED_PHASE = range(5)


class Connection(Protocol):
    """What the state needs of a client connection."""

    phase: int

    def abort(self) -> None: ...

    def shutdown(self) -> None: ...


class ServerState:
    """Everything connections of one worker share; built once per worker and config."""

    def __init__(
        self,
        config: EdgeConfig,
        *,
        error_log: ErrorLog,
        access_log: LogFile | None,
        zones: SharedZones | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.config = config
        self.router = Router(config)
        self.error_log = error_log
        self.access_log = access_log
        self.access_format = AccessLogFormatter(
            config.access_log.format, formats=config.log_formats
        )
        # The master's workers count into its shared block; a state of its own, its own.
        self.metrics = metrics if metrics is not None else WorkerMetrics(config)
        self.handlers = HandlerRegistry(config, error_log)
        self.handlers.state = self
        # The master's workers share their zones (shared memory, as nginx); a state
        # built without them (one process, tests) keeps its own.
        self.req_zones: dict[str, RequestRateZone] = {
            zone.name: RequestRateZone.from_config(zone) for zone in config.limit_req_zones
        }
        self.conn_zones: dict[str, ConnectionCountZone] = {
            zone.name: ConnectionCountZone.from_config(zone) for zone in config.limit_conn_zones
        }
        if zones is not None:
            self.req_zones.update(zones.req)
            self.conn_zones.update(zones.conn)
        # A dict keeps insertion order: the oldest connection comes first when
        # worker_connections forces one out.
        self.connections: dict[Connection, None] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.worker_connections = config.worker_connections
        self.stopping = False
        self.sendfile_native = True
        self._numbers = itertools.count(1)
        self.idle_event: asyncio.Event | None = None
        self.pipeline = Pipeline(self)

    def next_connection_number(self) -> int:
        return next(self._numbers)

    def admit(self, conn: Connection) -> bool:
        """Register a new connection, making room under ``worker_connections`` if needed."""
        metrics = self.metrics
        if metrics.counting:
            metrics.cells[ACCEPTED] += 1
        if len(self.connections) >= self.worker_connections and not self._make_room():
            self.error_log.log(
                "alert", f"{self.worker_connections} worker_connections are not enough"
            )
            return False
        self.connections[conn] = None
        if metrics.counting:
            metrics.cells[HANDLED] += 1
        return True

    def connection_phases(self) -> tuple[int, int, int]:
        """stub_status's reading, writing and waiting connections of this worker."""
        reading = writing = waiting = 0
        for conn in self.connections:
            phase = conn.phase
            if phase == HEAD:
                reading += 1
            elif phase == IDLE:
                waiting += 1
            else:
                writing += 1
        return reading, writing, waiting

    def _make_room(self) -> bool:
        # nginx reuses idle keep-alive connections; we also reclaim lingering ones and,
        # last, the oldest connection still trickling in its head, so that a slowloris
        # cannot lock everyone else out until client_header_timeout.
        for wanted in (LINGER, IDLE, HEAD):
            for conn in self.connections:
                if conn.phase == wanted:
                    self.error_log.log(
                        "warn",
                        f"{self.worker_connections} worker_connections are not enough, "
                        "reusing connections",
                    )
                    self.connections.pop(conn, None)
                    conn.abort()
                    return True
        return False

    def forget(self, conn: Connection) -> None:
        self.connections.pop(conn, None)
        if self.stopping and not self.connections and self.idle_event is not None:
            self.idle_event.set()

    def track(self, task: asyncio.Task[None]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def http_date(self) -> bytes:
        """The Date header (httpproto.http_date formats each second once)."""
        return http_date(time.time())

    def write_access(self, entry: AccessEntry) -> None:
        if self.access_log is not None:
            self.access_log.write_line(self.access_format.format(entry))
