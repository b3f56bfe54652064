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
"""

from __future__ import annotations

import mmap
import os
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
    "<ddQQQQd"
)  # busy_since (wall), busy_since_monotonic, requests, exceptions, tx bytes, static requests, rt_total s
_BUSY = struct.Struct("<dd")  # the first two fields of _CORE
URI_SIZE = 256
_CORE_SIZE = _CORE.size + URI_SIZE


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
            raw = self.memory[core_offset + _CORE.size : core_offset + _CORE_SIZE]
            line = raw.split(b"\0", 1)[0].decode("latin-1")
            cores.append(
                CoreSnapshot(
                    busy_since, busy_monotonic, requests, exceptions, tx, static, rt_total, line
                )
            )
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
        """A request started at wall time ``started`` (epoch seconds)."""
        offset = self.offset
        line = request_line[: URI_SIZE - 1]
        self.memory[offset + _CORE.size : offset + _CORE.size + len(line) + 1] = line + b"\0"
        _BUSY.pack_into(self.memory, offset, started, time.monotonic())

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
            0.0,
            self.requests,
            self.exceptions,
            self.tx,
            self.static_requests,
            self.rt_total,
        )
