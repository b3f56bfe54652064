"""A per-location microcache for proxied responses, bounded in memory.

Theory of operation
-------------------
"Microcaching" is what nginx users do with ``proxy_cache_valid 200 1s``:
hold a GET's answer for a second or so, so a burst of identical requests
costs the app one render.  This is that, in memory, per location:

* Only ``GET`` and ``HEAD`` are looked up or stored.  The key is method,
  scheme, host and the raw request URI (query included), so ``/a?x=1`` and
  ``/a?x=2`` are different entries and so are ``GET`` and ``HEAD``.
* A response is stored when its status has a ``valid`` duration and nothing
  says it is personal or uncachable: no ``Set-Cookie`` (a session cookie
  served to the next visitor is the classic microcache disaster), no
  ``Cache-Control: private / no-store / no-cache``, no ``max-age=0`` /
  ``s-maxage=0``, no ``Vary: *``.  Other ``Vary`` names are honoured: the
  entry remembers the request's values for them and only a request with
  the same values hits (Django sends ``Vary: Cookie`` whenever a view reads
  the session).
* Bodies over ``max_entry_size`` are streamed through and never stored; the
  collector gives up the moment the body grows past it, so a large download
  is never held in memory.
* Memory is bounded by ``max_size``: entries are accounted by body plus
  header bytes and the least recently used ones go first (an LRU by bytes).
  Expired entries go when they are next looked at or evicted.

The proxy asks ``lookup`` before contacting the upstream; on a miss it asks
``collector`` for a ``CacheCollector`` that sees the response head and body
as they are relayed and stores the entry once the body is complete.  The
clock is injected (monotonic seconds) so tests need not sleep.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

from edge.config.schema import CacheSettings

if TYPE_CHECKING:
    from edge.exchange import Request

Headers = list[tuple[bytes, bytes]]
CacheKey = tuple[str, str, str, bytes]

CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
# Per-entry bookkeeping not visible in the body or headers (dict slots, the key, the object).
_ENTRY_OVERHEAD = 256
_NO_STORE_DIRECTIVES = frozenset({b"private", b"no-store", b"no-cache"})


@dataclass(slots=True)
class CachedResponse:
    """One stored response: what the client gets on a HIT (without ``X-Cache``)."""

    status: int
    reason: bytes | None
    headers: Headers
    body: bytes
    expires: float  # monotonic deadline
    vary: tuple[bytes, ...]  # lower-case request header names from Vary
    vary_values: tuple[bytes | None, ...]
    size: int  # bytes charged against max_size


def cache_key(request: Request) -> CacheKey:
    return (request.method, request.scheme, request.host, request.target)


def _request_header(request: Request, name: bytes) -> bytes | None:
    values = [value for key, value in request.headers if key == name]
    if not values:
        return None
    return b", ".join(values)


def _vary_names(headers: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, ...] | None:
    """Lower-case names listed in Vary, sorted; None for ``Vary: *`` (never cacheable)."""
    names: set[bytes] = set()
    for name, value in headers:
        if name.lower() != b"vary":
            continue
        for token in value.split(b","):
            token = token.strip().lower()
            if token == b"*":
                return None
            if token:
                names.add(token)
    return tuple(sorted(names))


def storable_ttl(
    settings: CacheSettings, status: int, headers: Sequence[tuple[bytes, bytes]]
) -> float | None:
    """How long a response may be cached, or None when it must not be."""
    ttl: float | None = None
    for valid_status, duration in settings.valid:
        if valid_status == status:
            ttl = duration
            break
    if not ttl or ttl <= 0:
        return None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"set-cookie":
            return None
        if lowered == b"cache-control":
            for directive in value.lower().split(b","):
                directive = directive.strip()
                token, _, argument = directive.partition(b"=")
                token = token.strip()
                if token in _NO_STORE_DIRECTIVES:
                    return None
                if token in (b"max-age", b"s-maxage") and argument.strip(b' "') == b"0":
                    return None
    return ttl


class MicroCache:
    """The cache of one location.  Not thread-safe: one per event loop (worker)."""

    __slots__ = ("settings", "clock", "_entries", "_size", "hits", "misses")

    def __init__(
        self, settings: CacheSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._entries: OrderedDict[CacheKey, CachedResponse] = OrderedDict()
        self._size = 0
        self.hits = 0
        self.misses = 0

    @property
    def size(self) -> int:
        """Bytes held (bodies, headers and per-entry overhead)."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, request: Request) -> CachedResponse | None:
        """The fresh entry for this request, or None (a miss)."""
        if request.method not in CACHEABLE_METHODS:
            return None
        key = cache_key(request)
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expires <= self.clock():
                self._remove(key)
                entry = None
            elif entry.vary and entry.vary_values != tuple(
                _request_header(request, name) for name in entry.vary
            ):
                entry = None  # another variant; a store for this request replaces it
            else:
                self._entries.move_to_end(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def collector(
        self,
        request: Request,
        status: int,
        reason: bytes | None,
        headers: Headers,
    ) -> CacheCollector | None:
        """A collector for a response about to be relayed, or None if it won't be stored."""
        if request.method not in CACHEABLE_METHODS:
            return None
        ttl = storable_ttl(self.settings, status, headers)
        if ttl is None:
            return None
        vary = _vary_names(headers)
        if vary is None:
            return None
        return CacheCollector(self, request, status, reason, headers, ttl, vary)

    def store(self, key: CacheKey, entry: CachedResponse) -> bool:
        """Insert ``entry``, evicting least recently used ones to stay under ``max_size``."""
        if entry.size > self.settings.max_size:
            return False
        if key in self._entries:
            self._remove(key)
        self._entries[key] = entry
        self._size += entry.size
        now = self.clock()
        while self._size > self.settings.max_size:
            oldest_key, oldest = next(iter(self._entries.items()))
            self._remove(oldest_key)
            if oldest is entry:
                return False
        # Expired entries at the cold end cost memory for nothing: drop them while here.
        stale = [k for k, e in islice(self._entries.items(), 16) if e.expires <= now]
        for stale_key in stale:
            self._remove(stale_key)
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0

    def _remove(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self._size -= entry.size


class CacheCollector:
    """Accumulates one response body while it streams; stores it if it completes in bounds."""

    __slots__ = (
        "_cache",
        "_key",
        "_request_values",
        "_vary",
        "_status",
        "_reason",
        "_headers",
        "_ttl",
        "_parts",
        "_length",
        "_head_only",
        "abandoned",
    )

    def __init__(
        self,
        cache: MicroCache,
        request: Request,
        status: int,
        reason: bytes | None,
        headers: Headers,
        ttl: float,
        vary: tuple[bytes, ...],
    ) -> None:
        self._cache = cache
        self._key = cache_key(request)
        self._vary = vary
        self._request_values = tuple(_request_header(request, name) for name in vary)
        self._status = status
        self._reason = reason
        self._headers = list(headers)
        self._ttl = ttl
        self._parts: list[bytes] = []
        self._length = 0
        self._head_only = request.method == "HEAD"
        self.abandoned = False

    def add(self, data: bytes) -> None:
        if self.abandoned:
            return
        self._length += len(data)
        if self._length > self._cache.settings.max_entry_size:
            # Too big to keep: stop holding it now rather than at the end.
            self.abandoned = True
            self._parts = []
            return
        self._parts.append(data)

    def finish(self) -> bool:
        """The body is complete: store the entry.  True if it was stored."""
        if self.abandoned:
            return False
        body = b"".join(self._parts)
        self._parts = []
        headers = self._headers
        if not self._head_only:
            # The upstream may have sent it chunked; a HIT knows the length, so say it.
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
            headers.append((b"Content-Length", str(len(body)).encode("ascii")))
        size = len(body) + sum(len(n) + len(v) + 4 for n, v in headers) + _ENTRY_OVERHEAD
        entry = CachedResponse(
            status=self._status,
            reason=self._reason,
            headers=headers,
            body=body,
            expires=self._cache.clock() + self._ttl,
            vary=self._vary,
            vary_values=self._request_values,
            size=size,
        )
        return self._cache.store(self._key, entry)
