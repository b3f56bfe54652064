"""Edge's counters in shared memory: exact across workers, respawns and reloads.

Theory of operation
-------------------
Every figure that must add up exactly (requests by status class, histogram
buckets, cache hits, limit rejections, accepted connections) is one int64
*cell*.  The master creates one ``MetricsBlock`` before it forks anything: an
anonymous ``MAP_SHARED`` mmap (as ``edge.shared_zones``) holding

    header     fold sequence, then the pid that owns each worker slot
    retained   the cells of every worker that has exited, summed
    slot i     one worker's cells, then its *snapshot* (below)

Each worker process gets a slot of its own when it is spawned and increments
its cells in place (``cells[i] += 1`` on a ``memoryview``: ~30 ns more than a
list element, no lock, no system call): one writer per slot, so nothing can
race, and a worker killed by SIGKILL has lost nothing, because its counts
were never anywhere else.  When the master reaps a worker (crash, respawn,
the old generation after SIGHUP) it adds that slot's counter cells to
``retained`` and clears the slot for the next worker, with the fold sequence
odd meanwhile, so a reader retries rather than see the counts twice or not
at all.  A total is therefore ``retained + every live slot``, which never
goes down.

Which cell is which is the ``MetricsLayout``: series names with labels,
given indices by the master as it opens each generation (``register``).
Indices are never reused, so a reload that adds or drops a location keeps
every old series (its count stays retained) and workers of the old and new
generation agree on the ones they share.  A worker inherits the layout by
``fork``; it only reads it.

Figures that are a *state* rather than a count (open connections by phase,
each upstream peer's health, the last error-log lines) are not added up but
replaced: each worker writes a small JSON *snapshot* into its slot once a
second (``publish``, under a sequence lock), and the worker that answers a
scrape publishes its own first.  A dead worker's snapshot goes with its slot.

Everything here is the data; ``edge.handlers.observe`` renders it.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edge.config.schema import (
    OBSERVABILITY_HANDLERS,
    EdgeConfig,
    Location,
    ProxyHandler,
    Server,
)
from promtext import BUCKETS, HISTOGRAM_CELLS, Family, Kind, label_text, observe

# The exposition rules, the buckets and ``observe`` are shared with appserver (promtext).
__all__ = ["BUCKETS", "HISTOGRAM_CELLS", "Family", "Kind", "label_text", "observe"]

Labels = tuple[tuple[str, str], ...]
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

DEFAULT_CELLS = 8192  # per slot; a layout that outgrows it counts the rest in one sink cell
DEFAULT_SNAPSHOT = 64 * 1024  # bytes of JSON per worker
MIN_SLOTS = 32
PUBLISH_INTERVAL = 1.0
_HEADER = 4096
_SEQ = struct.Struct("<q")
_SNAP_HEAD = struct.Struct("<qq")  # sequence, length


FAMILIES: tuple[Family, ...] = (
    Family("edge_connections_accepted_total", "counter", "Client connections accepted."),
    Family(
        "edge_connections_handled_total",
        "counter",
        "Client connections handled (not refused for lack of worker_connections).",
    ),
    Family("edge_connections_active", "gauge", "Open client connections, waiting ones included."),
    Family("edge_connections_reading", "gauge", "Connections reading a request head."),
    Family("edge_connections_writing", "gauge", "Connections serving a request."),
    Family("edge_connections_waiting", "gauge", "Idle keep-alive connections."),
    Family(
        "edge_http_requests_total",
        "counter",
        "Requests answered, by server, location and status class.",
    ),
    Family(
        "edge_http_request_duration_seconds",
        "histogram",
        "Time from a proxied request's first byte to its last response byte, per upstream.",
    ),
    Family(
        "edge_upstream_response_seconds",
        "histogram",
        "Upstream response time (request sent to last response byte), per upstream.",
    ),
    Family("edge_upstream_peer_up", "gauge", "1 when every worker may send to the peer."),
    Family("edge_upstream_peer_down", "gauge", "1 when the peer is marked down in the config."),
    Family("edge_upstream_peer_backup", "gauge", "1 when the peer is a backup server."),
    Family(
        "edge_upstream_peer_failures",
        "gauge",
        "Failures counted against the peer within fail_timeout, summed over workers.",
    ),
    Family(
        "edge_upstream_peer_active_connections",
        "gauge",
        "Requests in flight to the peer, summed over workers.",
    ),
    Family("edge_microcache_hits_total", "counter", "Microcache hits, per location."),
    Family("edge_microcache_misses_total", "counter", "Microcache misses, per location."),
    Family("edge_limit_req_rejected_total", "counter", "Requests refused by limit_req, per zone."),
    Family(
        "edge_limit_conn_rejected_total", "counter", "Requests refused by limit_conn, per zone."
    ),
    Family("edge_config_reloads_total", "counter", "Configurations applied by SIGHUP."),
    Family(
        "edge_config_reload_failures_total",
        "counter",
        "SIGHUP reloads refused (bad config, a worker that could not start).",
    ),
    Family(
        "edge_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the serving configuration was loaded (start or last good reload).",
    ),
    Family(
        "edge_worker_restarts_total",
        "counter",
        "Worker processes that died unexpectedly and were respawned.",
    ),
    Family("edge_workers", "gauge", "Worker processes running."),
)
FAMILY = {family.name: family for family in FAMILIES}

# Cells every layout has, at fixed indices.
ACCEPTED, HANDLED, RELOADS, RELOAD_FAILURES, LAST_RELOAD, RESTARTS, SINK = range(7)
# What a layout that outgrew its cells counts into: wide enough for any series, never shown.
_FIXED: tuple[tuple[str, int], ...] = (
    ("edge_connections_accepted_total", ACCEPTED),
    ("edge_connections_handled_total", HANDLED),
    ("edge_config_reloads_total", RELOADS),
    ("edge_config_reload_failures_total", RELOAD_FAILURES),
    ("edge_config_last_reload_success_timestamp_seconds", LAST_RELOAD),
    ("edge_worker_restarts_total", RESTARTS),
)
_FIRST_FREE = SINK + HISTOGRAM_CELLS


def server_label(server: Server) -> str:
    """A server block's name in labels: its first server_name, else its first address."""
    if server.server_name:
        return server.server_name[0]
    return str(server.listen[0]) if server.listen else "_"


def location_label(location: Location | None) -> str:
    return "" if location is None else str(location)


@dataclass(frozen=True, slots=True)
class Series:
    """One group of cells: a counter is one cell, a histogram HISTOGRAM_CELLS, and
    ``edge_http_requests_total`` of one (server, location) one cell per status class."""

    family: str
    labels: Labels
    index: int
    width: int = 1


class MetricsLayout:
    """Series -> cell index; grows as the master registers configurations, never shrinks."""

    def __init__(self, capacity: int = DEFAULT_CELLS) -> None:
        self.capacity = capacity
        self.size = _FIRST_FREE
        self.series: list[Series] = [Series(name, (), index) for name, index in _FIXED]
        self._index: dict[tuple[str, Labels], int] = {(name, ()): index for name, index in _FIXED}
        self.overflowed = False
        # A worker's copy of the master's layout: a series the master did not register
        # would get an index the master may hand out later, so it goes to the sink.
        self.frozen = False

    def cell(self, family: str, labels: Labels = (), width: int = 1) -> int:
        """The first cell of a series, allocated on first use."""
        key = (family, labels)
        found = self._index.get(key)
        if found is not None:
            return found
        if self.frozen or self.size + width > self.capacity:
            self.overflowed = True
            return SINK  # counted nowhere that is rendered; see docs/monitoring.md
        index = self.size
        self.size += width
        self._index[key] = index
        self.series.append(Series(family, labels, index, width))
        return index

    def requests_base(self, server: str, location: str) -> int:
        """The 1xx cell of a (server, location); 2xx..5xx follow it."""
        labels = (("server", server), ("location", location))
        return self.cell("edge_http_requests_total", labels, len(STATUS_CLASSES))

    def register(self, config: EdgeConfig) -> None:
        """Every series a configuration can count, so all its workers agree on them."""
        for server in config.servers:
            name = server_label(server)
            self.requests_base(name, "")
            for location in server.locations:
                self.requests_base(name, location_label(location))
                handler = location.handler
                if isinstance(handler, ProxyHandler) and handler.cache is not None:
                    self.cache_cells(name, location)
        for upstream in config.upstreams:
            self.histograms(upstream.name)
        for zone in config.limit_req_zones:
            self.cell("edge_limit_req_rejected_total", (("zone", zone.name),))
        for czone in config.limit_conn_zones:
            self.cell("edge_limit_conn_rejected_total", (("zone", czone.name),))

    def cache_cells(self, server: str, location: Location) -> tuple[int, int]:
        labels = (("server", server), ("location", location_label(location)))
        return (
            self.cell("edge_microcache_hits_total", labels),
            self.cell("edge_microcache_misses_total", labels),
        )

    def histograms(self, upstream: str) -> tuple[int, int]:
        """The first cells of the request-duration and upstream-response histograms."""
        labels = (("upstream", upstream),)
        return (
            self.cell("edge_http_request_duration_seconds", labels, HISTOGRAM_CELLS),
            self.cell("edge_upstream_response_seconds", labels, HISTOGRAM_CELLS),
        )


# --- the shared block ------------------------------------------------------------------


class MetricsBlock:
    """The mmap of cells and snapshots; made by the master before it forks (module doc)."""

    def __init__(
        self,
        slots: int,
        layout: MetricsLayout | None = None,
        *,
        snapshot_bytes: int = DEFAULT_SNAPSHOT,
    ) -> None:
        self.layout = layout if layout is not None else MetricsLayout()
        self.slots = slots
        self.cell_bytes = self.layout.capacity * 8
        self.snapshot_bytes = snapshot_bytes
        self.slot_bytes = self.cell_bytes + snapshot_bytes
        if 8 + 8 * slots > _HEADER:
            raise ValueError(f"at most {(_HEADER - 8) // 8} worker slots")
        self._mm = mmap.mmap(-1, _HEADER + self.cell_bytes + slots * self.slot_bytes)
        self._view = memoryview(self._mm)
        self._pids = self._view[8:_HEADER].cast("q")
        self.retained = self._view[_HEADER : _HEADER + self.cell_bytes].cast("q")

    # -- the master --------------------------------------------------------------------

    def claim(self, pid_hint: int = -1) -> int:
        """A free slot for a worker about to be forked (-1: none left)."""
        for slot in range(self.slots):
            if self._pids[slot] == 0:
                self._pids[slot] = pid_hint
                return slot
        return -1

    def assign(self, slot: int, pid: int) -> None:
        if slot >= 0:
            self._pids[slot] = pid

    def release(self, slot: int) -> None:
        """A worker has exited (and was reaped): keep its counts, free its slot."""
        if slot < 0:
            return
        cells = self.cells(slot)
        seq = _SEQ.unpack_from(self._mm, 0)[0]
        _SEQ.pack_into(self._mm, 0, seq + 1)  # odd: readers wait
        try:
            retained = self.retained
            for index in range(self.layout.size):
                value = cells[index]
                if value:
                    retained[index] += value
            offset = self._slot_offset(slot)
            self._mm[offset : offset + self.slot_bytes] = bytes(self.slot_bytes)
            self._pids[slot] = 0
        finally:
            _SEQ.pack_into(self._mm, 0, seq + 2)

    def add(self, index: int, value: int = 1) -> None:
        """A master-side counter (reloads, restarts)."""
        self.retained[index] += value

    def set(self, index: int, value: int) -> None:
        self.retained[index] = value

    # -- workers -------------------------------------------------------------------------

    def _slot_offset(self, slot: int) -> int:
        return _HEADER + self.cell_bytes + slot * self.slot_bytes

    def cells(self, slot: int) -> memoryview:
        offset = self._slot_offset(slot)
        return self._view[offset : offset + self.cell_bytes].cast("q")

    def publish(self, slot: int, snapshot: dict[str, Any]) -> None:
        """Replace the slot's snapshot (one writer per slot: a sequence lock suffices)."""
        data = json.dumps(snapshot, separators=(",", ":")).encode()
        room = self.snapshot_bytes - _SNAP_HEAD.size
        if len(data) > room:
            snapshot = {**snapshot, "errors": [], "peers": snapshot.get("peers", [])[:50]}
            data = json.dumps(snapshot, separators=(",", ":")).encode()[:room]
        offset = self._slot_offset(slot) + self.cell_bytes
        seq = _SEQ.unpack_from(self._mm, offset)[0]
        _SEQ.pack_into(self._mm, offset, seq + 1)
        start = offset + _SNAP_HEAD.size
        self._mm[start : start + len(data)] = data
        _SNAP_HEAD.pack_into(self._mm, offset, seq + 2, len(data))

    def _snapshot(self, slot: int) -> dict[str, Any] | None:
        offset = self._slot_offset(slot) + self.cell_bytes
        for _ in range(100):
            seq, length = _SNAP_HEAD.unpack_from(self._mm, offset)
            if seq == 0:
                return None
            if seq % 2:
                continue
            start = offset + _SNAP_HEAD.size
            data = self._mm[start : start + length]
            if _SNAP_HEAD.unpack_from(self._mm, offset)[0] == seq:
                try:
                    found: dict[str, Any] = json.loads(data)
                except ValueError:
                    return None
                return found
        return None

    # -- readers -------------------------------------------------------------------------

    def live_slots(self) -> list[int]:
        return [slot for slot in range(self.slots) if self._pids[slot] > 0]

    def totals(self) -> list[int]:
        """Every cell summed over retained and live slots: a consistent read."""
        size = self.layout.size
        for _ in range(1000):
            seq = _SEQ.unpack_from(self._mm, 0)[0]
            if seq % 2:
                time.sleep(0.0001)
                continue
            sums = self.retained[:size].tolist()
            for slot in self.live_slots():
                cells = self.cells(slot)[:size].tolist()
                sums = [a + b for a, b in zip(sums, cells, strict=True)]
            if _SEQ.unpack_from(self._mm, 0)[0] == seq:
                return sums
        raise RuntimeError("the metrics block stayed locked")

    def snapshots(self) -> list[dict[str, Any]]:
        found = []
        for slot in self.live_slots():
            snapshot = self._snapshot(slot)
            if snapshot is not None:
                found.append(snapshot)
        return found


# --- one worker's handle ---------------------------------------------------------------------


class WorkerMetrics:
    """What one worker counts with: its slot's cells, and the cell indices of its config.

    Without a master (a worker started on its own, tests) it makes a private block.
    """

    __slots__ = (
        "block",
        "counting",
        "slot",
        "cells",
        "layout",
        "generation",
        "_requests",
        "_fallback",
        "_histograms",
        "_caches",
    )

    def __init__(
        self,
        config: EdgeConfig,
        block: MetricsBlock | None = None,
        slot: int = 0,
        generation: int = 1,
    ) -> None:
        if block is None:
            block = MetricsBlock(1)
            block.layout.register(config)
            slot = block.claim(os.getpid())
        else:
            block.layout.frozen = True  # in the worker: the master registered everything
        self.block = block
        # Off until a location can show the figures (stub_status, metrics, status_page):
        # then the request path does not count at all (bench: metrics on against off).
        self.counting = any(
            isinstance(location.handler, OBSERVABILITY_HANDLERS)
            for server in config.servers
            for location in server.locations
        )
        self.slot = slot
        self.layout = block.layout
        self.generation = generation
        # No slot left (more live workers than MIN_SLOTS allows): count into a scratch
        # array that nobody reads rather than into another worker's cells.
        self.cells = (
            block.cells(slot) if slot >= 0 else memoryview(bytearray(block.cell_bytes)).cast("q")
        )
        layout = self.layout
        self._requests: dict[int, int] = {}
        self._fallback: dict[int, int] = {}
        self._caches: dict[int, tuple[int, int]] = {}
        for server in config.servers:
            name = server_label(server)
            self._fallback[id(server)] = layout.requests_base(name, "")
            for location in server.locations:
                self._requests[id(location)] = layout.requests_base(name, location_label(location))
                handler = location.handler
                if isinstance(handler, ProxyHandler) and handler.cache is not None:
                    self._caches[id(location)] = layout.cache_cells(name, location)
        self._histograms = {
            upstream.name: layout.histograms(upstream.name) for upstream in config.upstreams
        }

    def requests_base(self, server: Server, location: Location | None) -> int:
        """The 1xx cell for requests of ``location`` (None: of ``server`` with no location)."""
        if location is not None:
            base = self._requests.get(id(location))
            if base is not None:
                return base
        base = self._fallback.get(id(server))
        if base is None:
            base = self.layout.requests_base(server_label(server), location_label(location))
        return base

    def count_request(self, server: Server, location: Location | None, status: int) -> None:
        if self.counting:
            self.cells[self.requests_base(server, location) + status_offset(status)] += 1

    def histograms(self, upstream: str) -> tuple[int, int] | None:
        return self._histograms.get(upstream)

    def cache_cells(self, location: Location) -> tuple[int, int] | None:
        return self._caches.get(id(location))

    def rejected(self, family: str, zone: str) -> None:
        if self.counting:
            self.cells[self.layout.cell(family, (("zone", zone),))] += 1

    def publish(self, snapshot: dict[str, Any]) -> None:
        if self.slot >= 0:
            self.block.publish(self.slot, snapshot)


def status_offset(status: int) -> int:
    offset = status // 100 - 1
    return offset if 0 <= offset < len(STATUS_CLASSES) else len(STATUS_CLASSES) - 1


def slot_count(workers: int) -> int:
    """Slots for a master running ``workers``: a reload's two generations, respawns, room."""
    return min(max(MIN_SLOTS, 4 * workers), (_HEADER - 8) // 8)


def series_values(totals: list[int], layout: MetricsLayout) -> Iterator[tuple[Series, list[int]]]:
    """Each series with the totals of its cells."""
    for series in layout.series:
        yield series, totals[series.index : series.index + series.width]
