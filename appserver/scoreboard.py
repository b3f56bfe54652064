"""Shared memory between the master and its workers (uWSGI keeps the same board).

Theory of operation
-------------------
The master maps one anonymous shared region before forking; every worker
inherits it.  Each worker slot has a header (pid, state, spawn time) and one
record per thread ("core", as uWSGI calls it).  A core record is written only
by its own thread: the time its current request started (0 when idle), the
request's method and URI, and its counters.  No locks are needed: every field
has exactly one writer, and readers (the master's harakiri check and the stats
server) tolerate a value that is one request old.
"""

from __future__ import annotations

import mmap
import struct
import time
from dataclasses import dataclass

# Worker states.
EMPTY, BOOTING, READY, RECYCLE, STOPPING = range(5)
STATE_NAMES = {
    EMPTY: "empty",
    BOOTING: "booting",
    READY: "ready",
    RECYCLE: "recycle",
    STOPPING: "stopping",
}

# Why a worker asked to be recycled.
RECYCLE_NONE, RECYCLE_MAX_REQUESTS = 0, 1

_WORKER = struct.Struct(
    "<iBBxxdII"
)  # pid, state, recycle reason, spawned_at, respawns, harakiri count
_CORE = struct.Struct(
    "<dQQQQd"
)  # busy_since, requests, exceptions, tx bytes, static requests, rt_total s
URI_SIZE = 256
_CORE_SIZE = _CORE.size + URI_SIZE


@dataclass(frozen=True, slots=True)
class CoreSnapshot:
    busy_since: float
    requests: int
    exceptions: int
    tx: int
    static_requests: int
    response_time_total: float
    request_line: str


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    index: int
    pid: int
    state: int
    recycle_reason: int
    spawned_at: float
    respawns: int
    harakiri_count: int
    cores: tuple[CoreSnapshot, ...]

    @property
    def requests(self) -> int:
        return sum(core.requests for core in self.cores)


class Scoreboard:
    def __init__(self, workers: int, cores: int) -> None:
        self.workers = workers
        self.cores = cores
        self._worker_size = _WORKER.size + cores * _CORE_SIZE
        self.memory = mmap.mmap(-1, max(self._worker_size * workers, 1))

    def _worker_offset(self, index: int) -> int:
        return index * self._worker_size

    def core_offset(self, index: int, core: int) -> int:
        return self._worker_offset(index) + _WORKER.size + core * _CORE_SIZE

    # -- written by the master -------------------------------------------------

    def reset_worker(self, index: int, pid: int, respawns: int, harakiri_count: int) -> None:
        offset = self._worker_offset(index)
        self.memory[offset : offset + self._worker_size] = bytes(self._worker_size)
        _WORKER.pack_into(
            self.memory, offset, pid, BOOTING, RECYCLE_NONE, time.time(), respawns, harakiri_count
        )

    def set_pid(self, index: int, pid: int) -> None:
        # Only the pid: the worker may already have written its state.
        struct.pack_into("<i", self.memory, self._worker_offset(index), pid)

    def set_state(self, index: int, state: int, reason: int = RECYCLE_NONE) -> None:
        offset = self._worker_offset(index)
        struct.pack_into("<BB", self.memory, offset + 4, state, reason)

    # -- read by anyone --------------------------------------------------------

    def snapshot(self, index: int) -> WorkerSnapshot:
        offset = self._worker_offset(index)
        pid, state, reason, spawned_at, respawns, harakiri_count = _WORKER.unpack_from(
            self.memory, offset
        )
        cores = []
        for core in range(self.cores):
            core_offset = self.core_offset(index, core)
            busy_since, requests, exceptions, tx, static, rt_total = _CORE.unpack_from(
                self.memory, core_offset
            )
            raw = self.memory[core_offset + _CORE.size : core_offset + _CORE_SIZE]
            line = raw.split(b"\0", 1)[0].decode("latin-1")
            cores.append(CoreSnapshot(busy_since, requests, exceptions, tx, static, rt_total, line))
        return WorkerSnapshot(
            index, pid, state, reason, spawned_at, respawns, harakiri_count, tuple(cores)
        )

    def state(self, index: int) -> int:
        return self.memory[self._worker_offset(index) + 4]

    def core_slot(self, index: int, core: int) -> CoreSlot:
        return CoreSlot(self.memory, self.core_offset(index, core))


class CoreSlot:
    """One thread's record; only that thread writes it."""

    __slots__ = ("memory", "offset", "requests", "exceptions", "tx", "static_requests", "rt_total")

    def __init__(self, memory: mmap.mmap, offset: int) -> None:
        self.memory = memory
        self.offset = offset
        self.requests = 0
        self.exceptions = 0
        self.tx = 0
        self.static_requests = 0
        self.rt_total = 0.0

    def begin(self, started: float, request_line: bytes) -> None:
        offset = self.offset
        line = request_line[: URI_SIZE - 1]
        self.memory[offset + _CORE.size : offset + _CORE.size + len(line) + 1] = line + b"\0"
        struct.pack_into("<d", self.memory, offset, started)

    def end(self, duration: float, tx: int, failed: bool, static: bool = False) -> None:
        self.requests += 1
        self.tx += tx
        self.rt_total += duration
        if failed:
            self.exceptions += 1
        if static:
            self.static_requests += 1
        _CORE.pack_into(
            self.memory,
            self.offset,
            0.0,
            self.requests,
            self.exceptions,
            self.tx,
            self.static_requests,
            self.rt_total,
        )
