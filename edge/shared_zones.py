"""limit_req / limit_conn zones in shared memory: every worker counts against one zone.

Theory of operation
-------------------
nginx keeps ``limit_req_zone`` and ``limit_conn_zone`` state in shared memory,
so a client gets the configured rate however many workers serve it.  Here the
master creates, before it forks, one ``SharedTable`` per zone: an anonymous
``MAP_SHARED`` mmap that every forked worker maps at the same pages, and a
process-shared lock (a POSIX semaphore from the ``fork`` context, already
unlinked, so nothing is left behind in /dev/shm).

The table is open addressing over fixed-size slots::

    header  64 bytes: pid of the lock holder (0 when free)
    slot    48 bytes: key (16 bytes), used, a, b, touched (int64 each)

``key`` is the client address itself, IPv4 as ``::ffff:a.b.c.d``, so two
clients never share a slot; other keys (not an IP) use a 128-bit BLAKE2b
digest.  A key may live only in the ``WINDOW`` slots starting at its
``hash()``: SipHash keyed with the interpreter's random hash secret, which
every worker inherits from the master by ``fork`` (workers are never exec'd),
so all agree on the slot while clients cannot aim their addresses at one
window.  ``a, b`` are ``excess, last`` (milli-
requests, ms) for a request zone and ``count, 0`` for a connection zone;
``touched`` is when the key was last looked up.

Memory is bounded by ``max_keys`` slots.  When a new key finds its window full,
a request zone evicts the least recently touched key *in that window* (an LRU
approximated per window, where nginx's zone keeps one LRU queue); a
connection zone refuses the request instead (nginx: "could not allocate node"),
since forgetting a count would let that client exceed its limit.  Keys whose
connection count drops to 0 are freed at once.

Every operation is one lock acquisition around a handful of struct calls; the
decisions are ``edge.limits``'s pure functions, run while the lock is held.
A worker killed while it holds the lock (SIGKILL, OOM) would stop every other
worker: a waiter that has waited ``STUCK_LOCK_TIMEOUT`` and finds the recorded
holder gone inherits the lock, as nginx's master force-unlocks a dead worker's
mutex.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import socket
import struct
from collections.abc import Callable, Hashable
from hashlib import blake2b
from typing import TypeVar

from edge.config.schema import EdgeConfig, LimitConnZone, LimitReqZone
from edge.limits import ConnectionCountZone, RequestRateZone, leak

R = TypeVar("R")
Bucket = tuple[int, int]
# What a decision asks the table to do with the key's slot: None leaves it (the
# lookup still counts as a touch), FREE empties it, (a, b) stores those values.
FREE: tuple[()] = ()
Decide = Callable[[Bucket | None], tuple[Bucket | tuple[()] | None, R]]

WINDOW = 8  # slots a key may live in: the probe window
STUCK_LOCK_TIMEOUT = 1.0  # the lock is held for microseconds: after this, check its holder
HEADER_SIZE = 64
_HOLDER = struct.Struct("<q")
_SLOT_FORMAT = "16sqqqq"  # key, used, a, b, touched
_SLOT = struct.Struct("<" + _SLOT_FORMAT)
_BUCKET = struct.Struct("<qq")  # a, b
_BUCKET_OFFSET = 24
_TOUCHED_OFFSET = 40
_FIELDS = 5
_EMPTY_KEY = bytes(16)
_V4_PREFIX = bytes(10) + b"\xff\xff"
_FORK = multiprocessing.get_context("fork")

_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def key_bytes(key: Hashable) -> bytes:
    """16 bytes naming ``key``: the IP address itself when it is one, else a digest."""
    if isinstance(key, str):
        try:
            return _V4_PREFIX + socket.inet_pton(socket.AF_INET, key)
        except OSError:
            pass
        try:
            packed = socket.inet_pton(socket.AF_INET6, key)
        except OSError:
            pass
        else:
            if packed != _EMPTY_KEY:  # "::" would read as an empty slot
                return packed
    return blake2b(repr(key).encode(), digest_size=16, person=b"edge-key").digest()


class SharedTable:
    """Fixed-size open-addressing table in a shared anonymous mmap (see the module doc)."""

    __slots__ = ("capacity", "window", "_starts", "_mm", "_lock", "_keys", "_times")

    def __init__(self, capacity: int, *, window: int = WINDOW) -> None:
        if capacity < 1:
            raise ValueError("a shared zone needs at least one slot")
        self.capacity = capacity
        self.window = min(window, capacity)
        # Windows never wrap: a window starts at one of these slots.
        self._starts = capacity - self.window + 1
        self._mm = mmap.mmap(-1, HEADER_SIZE + capacity * _SLOT.size)  # MAP_SHARED, zeroed
        self._lock = _FORK.Lock()
        rest = _SLOT.size - 16
        self._keys = struct.Struct("<" + f"16s{rest}x" * self.window)  # the window's keys
        self._times = struct.Struct("<" + f"{_TOUCHED_OFFSET}xq" * self.window)  # touched

    def __len__(self) -> int:
        """Keys held (a full scan: for tests and diagnostics, not the request path)."""
        self._acquire()
        try:
            used = struct.unpack_from("<" + _SLOT_FORMAT * self.capacity, self._mm, HEADER_SIZE)
        finally:
            self._release()
        return sum(used[1::_FIELDS])

    def slot_of(self, key: Hashable) -> int:
        """The first slot of ``key``'s window."""
        return self._start(key_bytes(key))

    def _start(self, key16: bytes) -> int:
        return hash(key16) % self._starts

    def transact(self, key: Hashable, now_ms: int, decide: Decide[R], full: R | None = None) -> R:
        """Under the lock: look ``key`` up, let ``decide`` see its ``(a, b)`` (None for a
        new key), apply the slot change it returns, and return its result.  A new key
        that finds its window full evicts the least recently touched key there, or,
        when ``full`` is given, is not stored and ``full`` is returned."""
        key16 = key_bytes(key)
        start = self._start(key16)
        mm = self._mm
        base = HEADER_SIZE + start * _SLOT.size
        self._acquire()
        try:
            keys = self._keys.unpack_from(mm, base)
            if key16 in keys:
                offset = base + keys.index(key16) * _SLOT.size
                state, result = decide(_BUCKET.unpack_from(mm, offset + _BUCKET_OFFSET))
                if state is None:
                    _HOLDER.pack_into(mm, offset + _TOUCHED_OFFSET, now_ms)
                elif len(state) == 2:
                    _SLOT.pack_into(mm, offset, key16, 1, state[0], state[1], now_ms)
                else:  # FREE
                    _SLOT.pack_into(mm, offset, _EMPTY_KEY, 0, 0, 0, 0)
                return result
            state, result = decide(None)
            if state is None or len(state) != 2:  # nothing to store for a key we do not have
                return result
            if _EMPTY_KEY in keys:
                j = keys.index(_EMPTY_KEY)
            elif full is not None:
                return full
            else:
                # Bounded memory: evict the least recently touched key of this window.
                touched = self._times.unpack_from(mm, base)
                j = touched.index(min(touched))
            _SLOT.pack_into(mm, base + j * _SLOT.size, key16, 1, state[0], state[1], now_ms)
            return result
        finally:
            self._release()

    def _acquire(self) -> None:
        lock = self._lock
        while not lock.acquire(True, STUCK_LOCK_TIMEOUT):
            holder = _HOLDER.unpack_from(self._mm, 0)[0]
            if holder != 0 and _alive(holder):
                continue
            break  # the holder died inside the critical section: take its lock over
        _HOLDER.pack_into(self._mm, 0, _pid)

    def _release(self) -> None:
        _HOLDER.pack_into(self._mm, 0, 0)
        try:
            self._lock.release()
        except ValueError:  # two waiters took over the same dead holder's lock
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- zones ------------------------------------------------------------------------------


class SharedRequestRateZone(RequestRateZone):
    """A ``limit_req_zone`` whose buckets live in a ``SharedTable``."""

    __slots__ = ("table",)

    def __init__(
        self,
        rate_milli: int,
        max_keys: int = 100_000,
        name: str = "",
        *,
        table: SharedTable | None = None,
    ) -> None:
        super().__init__(rate_milli, max_keys, name)
        self.table = table if table is not None else SharedTable(max_keys)

    @classmethod
    def from_config(cls, zone: LimitReqZone) -> SharedRequestRateZone:
        return cls(zone.rate_milli, zone.max_keys, zone.name)

    def __len__(self) -> int:
        return len(self.table)

    def account(self, key: Hashable, now_ms: int, burst: int) -> tuple[bool, int]:
        rate = self.rate_milli
        limit = burst * 1000

        def decide(bucket: Bucket | None) -> tuple[Bucket | None, tuple[bool, int]]:
            excess, last = leak(bucket, now_ms, rate)
            if bucket is not None and excess > limit:
                return None, (False, excess)
            return (excess, last), (True, excess)

        return self.table.transact(key, now_ms, decide)

    def peek(self, key: Hashable, now_ms: int) -> int | None:
        rate = self.rate_milli

        def decide(bucket: Bucket | None) -> tuple[None, int | None]:
            return None, None if bucket is None else leak(bucket, now_ms, rate)[0]

        return self.table.transact(key, now_ms, decide)

    def commit(self, key: Hashable, now_ms: int) -> int:
        rate = self.rate_milli

        def decide(bucket: Bucket | None) -> tuple[Bucket, int]:
            state = leak(bucket, now_ms, rate)
            return state, state[0]

        return self.table.transact(key, now_ms, decide)


class SharedConnectionCountZone(ConnectionCountZone):
    """A ``limit_conn_zone`` whose counters live in a ``SharedTable``."""

    __slots__ = ("table",)

    def __init__(
        self, max_keys: int = 100_000, name: str = "", *, table: SharedTable | None = None
    ) -> None:
        super().__init__(max_keys, name)
        self.table = table if table is not None else SharedTable(max_keys)

    @classmethod
    def from_config(cls, zone: LimitConnZone) -> SharedConnectionCountZone:
        return cls(zone.max_keys, zone.name)

    def __len__(self) -> int:
        return len(self.table)

    def count(self, key: Hashable) -> int:
        return self.table.transact(key, 0, _read_count)

    def acquire(self, key: Hashable, limit: int) -> bool:
        def decide(bucket: Bucket | None) -> tuple[Bucket | None, bool]:
            count = bucket[0] if bucket is not None else 0
            if count >= limit:
                return None, False
            return (count + 1, 0), True

        return self.table.transact(key, 0, decide, full=False)

    def release(self, key: Hashable) -> None:
        self.table.transact(key, 0, _release_one)


def _read_count(bucket: Bucket | None) -> tuple[None, int]:
    return None, bucket[0] if bucket is not None else 0


def _release_one(bucket: Bucket | None) -> tuple[Bucket | tuple[()] | None, None]:
    if bucket is None:
        return None, None
    if bucket[0] <= 1:
        return FREE, None
    return (bucket[0] - 1, 0), None


# --- the zones of one configuration -------------------------------------------------------


class SharedZones:
    """Every zone of a config, created by the master before it forks the workers.

    ``build(config, previous)`` reuses the tables of ``previous`` for zones that keep
    their name and ``max_keys`` across a reload, so the state carries over to the new
    generation (as nginx reuses a shared zone of the same name and size); a new or
    resized zone starts empty.
    """

    __slots__ = ("req", "conn")

    def __init__(
        self,
        req: dict[str, SharedRequestRateZone],
        conn: dict[str, SharedConnectionCountZone],
    ) -> None:
        self.req = req
        self.conn = conn

    @classmethod
    def build(cls, config: EdgeConfig, previous: SharedZones | None = None) -> SharedZones:
        req: dict[str, SharedRequestRateZone] = {}
        for zone in config.limit_req_zones:
            old = previous.req.get(zone.name) if previous is not None else None
            table = old.table if old is not None and old.max_keys == zone.max_keys else None
            req[zone.name] = SharedRequestRateZone(
                zone.rate_milli, zone.max_keys, zone.name, table=table
            )
        conn: dict[str, SharedConnectionCountZone] = {}
        for czone in config.limit_conn_zones:
            prior = previous.conn.get(czone.name) if previous is not None else None
            ctable = prior.table if prior is not None and prior.max_keys == czone.max_keys else None
            conn[czone.name] = SharedConnectionCountZone(czone.max_keys, czone.name, table=ctable)
        return cls(req, conn)
