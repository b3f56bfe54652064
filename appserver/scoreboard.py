"""Shared memory between the master and its workers (uWSGI keeps the same board).

Theory of operation
-------------------
The master maps one shared region before forking; every worker inherits it.
Each worker slot has a header (pid, state, spawn time) and one record per
thread ("core", as uWSGI calls it).  A core record is written only by its own
thread: when its current request started (0 when idle), the request's method
and URI, and its counters.  No locks are needed: every field has exactly one
writer, and readers (the master's harakiri check and the stats server)
tolerate a value that is one request old.

A request's start is kept twice.  The wall-clock time (what the caller of
``CoreSlot.begin`` passes) is for people: the stats server's
``request_start`` and the log.  ``CLOCK_MONOTONIC``, read inside ``begin``,
is for harakiri: it is the same clock in every process of the machine and
never jumps, so stepping the wall clock (NTP, a VM resumed) neither kills
every busy worker nor lets a stuck one live forever.

The region is a memfd when the OS has them, so that a graceful reload can
hand it to the re-executed master (``fd``, ``Scoreboard.attach``), which then
still sees what the old generation's draining workers are doing.

Each core also counts its requests' durations in a histogram
(``promtext.HISTOGRAM_CELLS`` int64 cells after the request line), when the
metrics server is on.  A worker's counts live only in its slot, so when the
master reaps a worker it folds them into ``Retained``: a second memfd, per
worker id, made by the first master and handed to every re-executed one, so
that ``appserver_requests_total`` neither resets nor doubles across respawns
and reloads (docs/monitoring.md, "appserver").
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

from promtext import BOUNDS_US, HISTOGRAM_CELLS

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
    "<ddQQQQd"
)  # busy_since (wall), busy_since_monotonic, requests, exceptions, tx bytes, static requests, rt_total s
_BUSY = struct.Struct("<dd")  # the first two fields of _CORE
URI_SIZE = 256
_HISTOGRAM = struct.Struct(f"<{HISTOGRAM_CELLS}q")  # request durations (promtext's cells)
_HISTOGRAM_OFFSET = _CORE.size + URI_SIZE
_CORE_SIZE = _HISTOGRAM_OFFSET + _HISTOGRAM.size
_SUM = HISTOGRAM_CELLS - 1


@dataclass(frozen=True, slots=True)
class CoreSnapshot:
    busy_since: float  # epoch seconds the current request started; 0.0 when idle
    busy_since_monotonic: float  # the same instant on CLOCK_MONOTONIC; 0.0 when idle
    requests: int
    exceptions: int
    tx: int
    static_requests: int
    response_time_total: float
    request_line: str
    histogram: tuple[int, ...] = (0,) * HISTOGRAM_CELLS


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

    def overdue(self, now: float, limit: float) -> tuple[int, CoreSnapshot] | None:
        """The first core whose request has run longer than ``limit`` seconds at
        monotonic time ``now`` (harakiri), with its index; None if there is none."""
        for index, core in enumerate(self.cores):
            if core.busy_since_monotonic and now - core.busy_since_monotonic > limit:
                return index, core
        return None


def _shared_region(size: int) -> tuple[mmap.mmap, int | None]:
    """A shared mapping of ``size`` bytes, and its memfd (None where there is no memfd)."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        return mmap.mmap(-1, size), None
    fd = memfd_create("appserver-scoreboard", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        return mmap.mmap(fd, size), fd
    except BaseException:
        os.close(fd)
        raise


class Scoreboard:
    def __init__(self, workers: int, cores: int, *, fd: int | None = None) -> None:
        """A new board; or, with ``fd``, the board another master made (see ``attach``)."""
        self.workers = workers
        self.cores = cores
        self._worker_size = _WORKER.size + cores * _CORE_SIZE
        size = max(self._worker_size * workers, 1)
        if fd is None:
            self.memory, self.fd = _shared_region(size)
        else:
            self.memory, self.fd = mmap.mmap(fd, size), fd

    @classmethod
    def attach(cls, fd: int, workers: int, cores: int) -> Scoreboard:
        """Map the board behind ``fd``, inherited across exec from the previous master."""
        return cls(workers, cores, fd=fd)

    def close(self) -> None:
        self.memory.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close_fd(self) -> None:
        """Forget the descriptor but keep the mapping (a worker needs the memory, not the fd)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

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
            busy_since, busy_monotonic, requests, exceptions, tx, static, rt_total = (
                _CORE.unpack_from(self.memory, core_offset)
            )
            raw = self.memory[core_offset + _CORE.size : core_offset + _HISTOGRAM_OFFSET]
            line = raw.split(b"\0", 1)[0].decode("latin-1")
            histogram = _HISTOGRAM.unpack_from(self.memory, core_offset + _HISTOGRAM_OFFSET)
            cores.append(
                CoreSnapshot(
                    busy_since,
                    busy_monotonic,
                    requests,
                    exceptions,
                    tx,
                    static,
                    rt_total,
                    line,
                    histogram,
                )
            )
        return WorkerSnapshot(
            index, pid, state, reason, spawned_at, respawns, harakiri_count, tuple(cores)
        )

    def state(self, index: int) -> int:
        return self.memory[self._worker_offset(index) + 4]

    def core_slot(self, index: int, core: int, *, histogram: bool = False) -> CoreSlot:
        return CoreSlot(self.memory, self.core_offset(index, core), histogram=histogram)


class CoreSlot:
    """One thread's record; only that thread writes it."""

    __slots__ = (
        "memory",
        "offset",
        "requests",
        "exceptions",
        "tx",
        "static_requests",
        "rt_total",
        "histogram",
    )

    def __init__(self, memory: mmap.mmap, offset: int, *, histogram: bool = False) -> None:
        self.memory = memory
        self.offset = offset
        self.requests = 0
        self.exceptions = 0
        self.tx = 0
        self.static_requests = 0
        self.rt_total = 0.0
        # The duration histogram, counted only when someone can read it (metrics-http).
        start = offset + _HISTOGRAM_OFFSET
        self.histogram: memoryview | None = (
            memoryview(memory)[start : start + _HISTOGRAM.size].cast("q") if histogram else None
        )

    def close(self) -> None:
        """Let go of the histogram's view, so that the board can be unmapped (tests)."""
        if self.histogram is not None:
            self.histogram.release()
            self.histogram = None

    def begin(self, started: float, request_line: bytes) -> None:
        """A request started at wall time ``started`` (epoch seconds)."""
        offset = self.offset
        line = request_line[: URI_SIZE - 1]
        self.memory[offset + _CORE.size : offset + _CORE.size + len(line) + 1] = line + b"\0"
        _BUSY.pack_into(self.memory, offset, started, time.monotonic())

    def end(self, duration: float, tx: int, failed: bool, static: bool = False) -> None:
        histogram = self.histogram
        if histogram is not None:
            # promtext.observe, inlined: this is the request path.
            micros = int(duration * 1_000_000)
            histogram[bisect_left(BOUNDS_US, micros)] += 1
            histogram[_SUM] += micros
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
            0.0,
            self.requests,
            self.exceptions,
            self.tx,
            self.static_requests,
            self.rt_total,
        )


# -- what outlives a worker ---------------------------------------------------------

# Retained cells: a header, then one record per worker id (1..capacity).
_CAPACITY, RELOADS, LAST_RELOAD_MS, STARTED_MS = range(4)
_HEADER_CELLS = 8
REQUESTS, EXCEPTIONS, HARAKIRI, RESPAWNS = range(4)
_HISTOGRAM_BASE = 4
_RECORD_CELLS = _HISTOGRAM_BASE + HISTOGRAM_CELLS
MIN_WORKER_IDS = 256


@dataclass(frozen=True, slots=True)
class WorkerTotals:
    """What the workers numbered ``worker_id`` did, before the live ones."""

    requests: int
    exceptions: int
    harakiri: int
    respawns: int
    histogram: tuple[int, ...]


class Retained:
    """Counts of exited workers by worker id, and the master's own counts.

    Written by the master only (it folds a worker in when it reaps it, and
    counts respawns, harakiri kills and reloads), so it needs no lock.  A
    memfd: ``fd`` goes to the re-executed master on a graceful reload
    (``attach``), which keeps counting in the same cells.
    """

    def __init__(self, worker_ids: int, *, fd: int | None = None) -> None:
        if fd is None:
            capacity = max(worker_ids, MIN_WORKER_IDS)
            self.memory, self.fd = _shared_region(self._size(capacity))
            self.cells = memoryview(self.memory).cast("q")
            self.cells[_CAPACITY] = capacity
            self.cells[STARTED_MS] = int(time.time() * 1000)
        else:
            capacity = struct.unpack("<q", os.pread(fd, 8, 0))[0]
            self.memory, self.fd = mmap.mmap(fd, self._size(capacity)), fd
            self.cells = memoryview(self.memory).cast("q")
        self.capacity = capacity
        if worker_ids > capacity:
            self._grow(worker_ids)

    @staticmethod
    def _size(capacity: int) -> int:
        return (_HEADER_CELLS + capacity * _RECORD_CELLS) * 8

    @classmethod
    def attach(cls, fd: int, worker_ids: int) -> Retained:
        """The totals behind ``fd``, inherited across exec from the previous master."""
        return cls(worker_ids, fd=fd)

    def _grow(self, worker_ids: int) -> None:
        """A reload raised ``processes`` above the capacity: copy into a bigger memfd."""
        old_cells, old_memory, old_fd = self.cells, self.memory, self.fd
        self.memory, self.fd = _shared_region(self._size(worker_ids))
        self.cells = memoryview(self.memory).cast("q")
        self.cells[: len(old_cells)] = old_cells
        self.cells[_CAPACITY] = self.capacity = worker_ids
        old_cells.release()
        old_memory.close()
        if old_fd is not None:
            os.close(old_fd)

    def close(self) -> None:
        self.cells.release()
        self.memory.close()
        self.close_fd()

    def close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _base(self, worker_id: int) -> int | None:
        if not 1 <= worker_id <= self.capacity:
            return None
        return _HEADER_CELLS + (worker_id - 1) * _RECORD_CELLS

    def fold(self, worker_id: int, cores: Sequence[CoreSnapshot]) -> None:
        """A worker has exited: keep what its cores counted."""
        base = self._base(worker_id)
        if base is None:
            return
        cells = self.cells
        for core in cores:
            cells[base + REQUESTS] += core.requests
            cells[base + EXCEPTIONS] += core.exceptions
            for index, value in enumerate(core.histogram):
                if value:
                    cells[base + _HISTOGRAM_BASE + index] += value

    def add(self, worker_id: int, field: int, count: int = 1) -> None:
        """Count a respawn or a harakiri kill (``RESPAWNS``, ``HARAKIRI``) of a worker id."""
        base = self._base(worker_id)
        if base is not None:
            self.cells[base + field] += count

    def reloaded(self, now: float) -> None:
        self.cells[RELOADS] += 1
        self.cells[LAST_RELOAD_MS] = int(now * 1000)

    @property
    def reloads(self) -> int:
        return int(self.cells[RELOADS])

    @property
    def last_reload(self) -> float:
        """Epoch seconds of the last graceful reload, else of the first start."""
        return (self.cells[LAST_RELOAD_MS] or self.cells[STARTED_MS]) / 1000

    @property
    def started(self) -> float:
        return float(self.cells[STARTED_MS]) / 1000

    def totals(self, worker_id: int) -> WorkerTotals:
        base = self._base(worker_id)
        if base is None:
            return WorkerTotals(0, 0, 0, 0, (0,) * HISTOGRAM_CELLS)
        cells = self.cells
        return WorkerTotals(
            cells[base + REQUESTS],
            cells[base + EXCEPTIONS],
            cells[base + HARAKIRI],
            cells[base + RESPAWNS],
            tuple(cells[base + _HISTOGRAM_BASE : base + _RECORD_CELLS]),
        )

    def worker_ids(self) -> list[int]:
        """The worker ids that have counted anything."""
        found = []
        for worker_id in range(1, self.capacity + 1):
            base = _HEADER_CELLS + (worker_id - 1) * _RECORD_CELLS
            if any(self.cells[base : base + _RECORD_CELLS]):
                found.append(worker_id)
        return found
