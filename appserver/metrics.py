"""appserver's figures as Prometheus text and as the status page's JSON.

Theory of operation
-------------------
The master is the only reader and the only writer of the totals of exited
workers (``scoreboard.Retained``), and it reads the live workers' slots of
the scoreboard (``scoreboard.Scoreboard``; the old generation's boards too
while it drains after a reload).  ``Reading`` is one such read as plain data,
made by ``appserver.master`` in its own loop, between two reaps: a worker is
either still in its slot or already folded into the retained totals, never
both and never neither, so a counter summed here is exact.  Everything below
only shapes a ``Reading`` and is tested without a master.

A counter of a worker id (``worker="2"``) is what every process that has been
worker 2 counted: the retained total, plus the live process, plus, during a
reload, the old generation's worker 2 until it exits.  Gauges (busy and idle
threads, RSS) are summed over the live processes of that id.

The text is rendered with ``promtext``, the exposition rules edge uses too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from appserver import scoreboard as sb
from appserver.scoreboard import WorkerSnapshot, WorkerTotals
from appserver.stats import SocketStats
from promtext import HISTOGRAM_CELLS, Family, exposition, histogram_lines, sample

FAMILIES: tuple[Family, ...] = (
    Family("appserver_requests_total", "counter", "Requests answered, per worker id."),
    Family(
        "appserver_exceptions_total",
        "counter",
        "Requests whose app raised (answered 500 or cut short), per worker id.",
    ),
    Family(
        "appserver_request_duration_seconds",
        "histogram",
        "Time from a request's start to its last response byte, all workers.",
    ),
    Family("appserver_busy_threads", "gauge", "Threads serving a request, per worker id."),
    Family(
        "appserver_idle_threads", "gauge", "Threads of accepting workers waiting for a request."
    ),
    Family(
        "appserver_worker_respawns_total",
        "counter",
        "Worker processes started to replace one (crash, harakiri, max-requests, "
        "reload-on-rss), per worker id.",
    ),
    Family("appserver_worker_rss_bytes", "gauge", "Resident memory of the worker's processes."),
    Family("appserver_harakiri_total", "counter", "Workers killed by harakiri, per worker id."),
    Family(
        "appserver_listen_queue",
        "gauge",
        "Connections waiting in the kernel's accept queue, per listener.",
    ),
    Family("appserver_listen_queue_max", "gauge", "The accept queue's limit, per listener."),
    Family(
        "appserver_workers", "gauge", "Worker processes running (both generations in a reload)."
    ),
    Family("appserver_config_reloads_total", "counter", "Graceful reloads (SIGHUP, touch-reload)."),
    Family(
        "appserver_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the serving master started: the first start or the last graceful reload.",
    ),
)


@dataclass(frozen=True, slots=True)
class ProcessReading:
    """One live worker process."""

    worker_id: int
    pid: int
    old: bool  # of the generation before a graceful reload, draining
    stopping: bool  # told to stop, finishing its requests
    snapshot: WorkerSnapshot
    rss: int
    vsz: int

    @property
    def busy(self) -> int:
        return sum(1 for core in self.snapshot.cores if core.busy_since)

    @property
    def accepting(self) -> bool:
        return self.snapshot.state == sb.READY and not self.stopping and not self.old

    @property
    def idle(self) -> int:
        return len(self.snapshot.cores) - self.busy if self.accepting else 0

    @property
    def status(self) -> str:
        """uwsgitop's words: idle, busy, sig (stopping); booting before it is ready."""
        if self.stopping or self.old or self.snapshot.state == sb.STOPPING:
            return "sig"
        if self.snapshot.state == sb.BOOTING:
            return "booting"
        return "busy" if self.busy else "idle"


@dataclass(frozen=True, slots=True)
class Reading:
    """One consistent read of the master's figures (see the module doc)."""

    time: float
    master_pid: int
    processes: tuple[ProcessReading, ...]
    retained: dict[int, WorkerTotals]  # worker id -> totals of its exited processes
    sockets: tuple[SocketStats, ...]
    reloads: int = 0
    last_reload: float = 0.0
    started: float = 0.0
    worker_ids: tuple[int, ...] = ()  # the configured ones, shown even before they count
    _by_id: dict[int, list[ProcessReading]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for process in self.processes:
            self._by_id.setdefault(process.worker_id, []).append(process)

    def ids(self) -> list[int]:
        return sorted({*self.worker_ids, *self.retained, *self._by_id})

    def live(self, worker_id: int) -> list[ProcessReading]:
        return self._by_id.get(worker_id, [])

    def counter(self, worker_id: int, name: str) -> int:
        """requests, exceptions, harakiri or respawns of a worker id, exited and live."""
        retained = self.retained.get(worker_id)
        total = getattr(retained, name) if retained is not None else 0
        if name in ("requests", "exceptions"):
            for process in self.live(worker_id):
                total += sum(getattr(core, name) for core in process.snapshot.cores)
        return int(total)

    def histogram(self) -> list[int]:
        cells = [0] * HISTOGRAM_CELLS
        for totals in self.retained.values():
            cells = [a + b for a, b in zip(cells, totals.histogram, strict=True)]
        for process in self.processes:
            for core in process.snapshot.cores:
                cells = [a + b for a, b in zip(cells, core.histogram, strict=True)]
        return cells

    def total(self, name: str) -> int:
        return sum(self.counter(worker_id, name) for worker_id in self.ids())


def prometheus_text(reading: Reading) -> bytes:
    samples: dict[str, list[str]] = {}

    def add(family: str, labels: Iterable[tuple[str, str]], value: float) -> None:
        samples.setdefault(family, []).append(sample(family, labels, value))

    for worker_id in reading.ids():
        labels = (("worker", str(worker_id)),)
        add("appserver_requests_total", labels, reading.counter(worker_id, "requests"))
        add("appserver_exceptions_total", labels, reading.counter(worker_id, "exceptions"))
        add("appserver_worker_respawns_total", labels, reading.counter(worker_id, "respawns"))
        add("appserver_harakiri_total", labels, reading.counter(worker_id, "harakiri"))
        live = reading.live(worker_id)
        if live:
            add("appserver_busy_threads", labels, sum(p.busy for p in live))
            add("appserver_idle_threads", labels, sum(p.idle for p in live))
            add("appserver_worker_rss_bytes", labels, sum(p.rss for p in live))
    samples["appserver_request_duration_seconds"] = histogram_lines(
        "appserver_request_duration_seconds", (), reading.histogram()
    )
    for entry in reading.sockets:
        # The listener's address as bound (a unix socket's path, escaped like any value).
        listener = (("listener", entry.name), ("proto", entry.proto))
        add("appserver_listen_queue", listener, entry.queue)
        add("appserver_listen_queue_max", listener, entry.max_queue)
    add("appserver_workers", (), len(reading.processes))
    add("appserver_config_reloads_total", (), reading.reloads)
    add("appserver_config_last_reload_success_timestamp_seconds", (), reading.last_reload)
    return exposition(FAMILIES, samples)


def status_document(reading: Reading) -> dict[str, Any]:
    """/status.json: what the status page shows, uwsgitop's columns and the busy requests."""
    now = reading.time
    workers = []
    busy_requests: list[dict[str, Any]] = []
    for process in sorted(reading.processes, key=lambda p: (p.old, p.worker_id, p.pid)):
        snapshot = process.snapshot
        requests = snapshot.requests
        rt_total = sum(core.response_time_total for core in snapshot.cores)
        cores = []
        for index, core in enumerate(snapshot.cores):
            elapsed = max(now - core.busy_since, 0.0) if core.busy_since else None
            cores.append(
                {
                    "id": index,
                    "requests": core.requests,
                    "busy": core.busy_since != 0.0,
                    "request": core.request_line if core.busy_since else "",
                    "elapsed": elapsed,
                }
            )
            if elapsed is not None:
                busy_requests.append(
                    {
                        "worker": process.worker_id,
                        "pid": process.pid,
                        "core": index,
                        "request": core.request_line,
                        "elapsed": round(elapsed, 3),
                    }
                )
        workers.append(
            {
                "id": process.worker_id,
                "pid": process.pid,
                "generation": "old" if process.old else "current",
                "status": process.status,
                "requests": requests,
                "exceptions": sum(core.exceptions for core in snapshot.cores),
                "busy": process.busy,
                "idle": process.idle,
                "threads": len(snapshot.cores),
                "rss": process.rss,
                "vsz": process.vsz,
                "avg_rt_ms": round(rt_total / requests * 1000, 3) if requests else 0.0,
                "tx": sum(core.tx for core in snapshot.cores),
                "respawns": reading.counter(process.worker_id, "respawns"),
                "harakiri": reading.counter(process.worker_id, "harakiri"),
                "last_spawn": snapshot.spawned_at,
                "cores": cores,
            }
        )
    busy_requests.sort(key=lambda entry: -entry["elapsed"])
    return {
        "time": now,
        "pid": reading.master_pid,
        "started": reading.started,
        "reloads": reading.reloads,
        "last_reload": reading.last_reload,
        "requests_total": reading.total("requests"),
        "exceptions_total": reading.total("exceptions"),
        "harakiri_total": reading.total("harakiri"),
        "respawns_total": reading.total("respawns"),
        "listeners": [
            {
                "name": entry.name,
                "proto": entry.proto,
                "queue": entry.queue,
                "max_queue": entry.max_queue,
            }
            for entry in reading.sockets
        ],
        "workers": workers,
        "busy_requests": busy_requests,
    }
