"""The microcache: what is stored, for how long, and how memory stays bounded."""

from __future__ import annotations

import pytest

from edge.cache import MicroCache, storable_ttl
from edge.config.schema import CacheSettings
from edge.exchange import Request
from tests.support.fake_exchange import make_exchange, proxy_config, proxy_location, upstream

CONFIG = proxy_config(proxy_location(), upstream("app", "127.0.0.1:1"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request(
    method: str = "GET", target: str = "/page", headers: list[tuple[bytes, bytes]] | None = None
) -> Request:
    return make_exchange(CONFIG, method, target, headers).request


def store(
    cache: MicroCache,
    req: Request,
    body: bytes = b"body",
    status: int = 200,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> bool:
    collector = cache.collector(req, status, b"OK", headers or [(b"Content-Type", b"text/plain")])
    if collector is None:
        return False
    collector.add(body)
    return collector.finish()


def test_hit_after_store_until_it_expires() -> None:
    clock = Clock()
    cache = MicroCache(CacheSettings(valid=((200, 2.0),)), clock)
    assert cache.lookup(request()) is None
    assert store(cache, request(), b"hello")
    entry = cache.lookup(request())
    assert entry is not None and entry.body == b"hello" and entry.status == 200
    assert (b"Content-Length", b"5") in entry.headers
    assert cache.lookup(request("GET", "/page?x=1")) is None  # the query is part of the key
    assert cache.lookup(request("HEAD")) is None  # so is the method
    clock.now += 2.5
    assert cache.lookup(request()) is None
    assert len(cache) == 0 and cache.size == 0


@pytest.mark.parametrize(
    "headers",
    [
        [(b"Set-Cookie", b"sessionid=abc")],
        [(b"Cache-Control", b"private, max-age=60")],
        [(b"Cache-Control", b"no-store")],
        [(b"cache-control", b"No-Cache")],
        [(b"Cache-Control", b"max-age=0")],
        [(b"Vary", b"*")],
    ],
)
def test_personal_or_uncachable_responses_are_not_stored(
    headers: list[tuple[bytes, bytes]],
) -> None:
    cache = MicroCache(CacheSettings())
    assert cache.collector(request(), 200, b"OK", headers) is None
    assert storable_ttl(CacheSettings(), 200, [(b"Cache-Control", b"public, max-age=60")]) == 1.0


def test_only_configured_statuses_and_methods() -> None:
    cache = MicroCache(CacheSettings(valid=((200, 1.0), (404, 5.0))))
    assert cache.collector(request(), 500, b"", []) is None
    assert cache.collector(request(), 301, b"", []) is None
    assert cache.collector(request("POST"), 200, b"", []) is None
    assert store(cache, request(), status=404)
    assert cache.lookup(request("POST")) is None


def test_vary_keeps_variants_apart() -> None:
    cache = MicroCache(CacheSettings())
    alice = request(headers=[(b"cookie", b"sessionid=alice")])
    bob = request(headers=[(b"cookie", b"sessionid=bob")])
    assert store(cache, alice, b"alice's page", headers=[(b"Vary", b"Cookie, Accept-Encoding")])
    hit = cache.lookup(alice)
    assert hit is not None and hit.body == b"alice's page"
    assert cache.lookup(bob) is None


def test_large_bodies_are_abandoned_as_they_stream() -> None:
    cache = MicroCache(CacheSettings(max_entry_size=10))
    collector = cache.collector(request(), 200, b"OK", [])
    assert collector is not None
    collector.add(b"12345")
    collector.add(b"678901")
    assert collector.abandoned
    assert not collector.finish()
    assert cache.lookup(request()) is None


def test_memory_is_bounded_lru_by_bytes() -> None:
    cache = MicroCache(CacheSettings(max_size=3200, max_entry_size=2000))
    for name in ("a", "b", "c"):
        assert store(cache, request("GET", f"/{name}"), b"x" * 700)
    assert cache.lookup(request("GET", "/a")) is not None  # a is now the most recent
    assert store(cache, request("GET", "/d"), b"x" * 700)
    assert cache.size <= 3200
    assert cache.lookup(request("GET", "/b")) is None  # the least recently used went first
    assert cache.lookup(request("GET", "/a")) is not None
    assert cache.lookup(request("GET", "/d")) is not None
    # An entry larger than the whole cache is never stored.
    small = MicroCache(CacheSettings(max_size=500, max_entry_size=2000))
    assert not store(small, request(), b"x" * 1000)


def test_head_entries_keep_the_upstream_length() -> None:
    cache = MicroCache(CacheSettings())
    assert store(cache, request("HEAD"), b"", headers=[(b"Content-Length", b"1234")])
    entry = cache.lookup(request("HEAD"))
    assert entry is not None and entry.headers == [(b"Content-Length", b"1234")]
