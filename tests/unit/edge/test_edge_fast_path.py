"""Requests answered inside ``data_received`` (``Pipeline.answer_now``), against the task path.

What a client sees must not depend on which way a request went: every case
here is sent twice, once as it is and once with the fast path switched off,
and the bytes (Date aside) and the access-log lines (time aside) must be the
same.  Then the fast path must really be taken: the answer is in the
transport's buffer when ``data_received`` returns, and no task was made.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import pytest

from edge.handlers.static import read_cached
from tests.support.edge_protocol import Client, Harness

SITE = """
servers:
  - listen: 127.0.0.1:8080
    server_name: example.com
    keepalive_requests: 5
    locations:
      - path: /static/
        alias: {root}/
      - path: /cached/
        alias: {root}/
        open_file_cache: {{max: 10, valid: 60s}}
      - path: /expiring/
        alias: {root}/
        expires: 1h
        open_file_cache: true
      - path: = /ok
        return: {{status: 200, body: "fine\\n"}}
      - path: = /gone
        return: 410
      - path: = /moved
        return: {{status: 301, location: "https://example.org/"}}
      - path: = /who
        return: {{status: 200, body: "$remote_addr\\n"}}
      - path: /private/
        alias: {root}/
        access: [deny all]
"""

REQUESTS = [
    b"GET /static/small.txt HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n",
    b"HEAD /static/small.txt HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /static/missing.txt HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /static/small.txt HTTP/1.1\r\nHost: example.com\r\nIf-None-Match: *\r\n\r\n",
    b"GET /static/small.txt HTTP/1.1\r\nHost: example.com\r\nRange: bytes=0-3\r\n\r\n",
    b"GET /static/big.bin HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /cached/small.txt HTTP/1.1\r\nHost: example.com\r\nReferer: http://r/\r\n\r\n",
    b"GET /cached/small.txt HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /expiring/small.txt HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /expiring/small.txt HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /ok HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /gone HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /moved?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /who HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /private/small.txt HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"POST /static/small.txt HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n",
    b"GET /ok HTTP/1.0\r\n\r\n",
    b"GET /ok HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET /static/small.txt HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
]

_DATE = re.compile(rb"\r\n(?:Date|Expires): [^\r]*")  # both follow the clock
_LOG_TIME = re.compile(r"\[[^\]]*\]")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "small.txt").write_bytes(b"small file\n" * 20)
    (site / "big.bin").write_bytes(os.urandom(200 * 1024))
    return site


def _serve_all(tmp_path: Path, root: Path, fast: bool) -> tuple[list[bytes], list[str]]:
    """Each request on a connection of its own; what went out, and the access log."""
    outputs: list[bytes] = []

    async def main() -> list[str]:
        harness = Harness(SITE.format(root=root), tmp_path)
        if not fast:
            harness.state.pipeline.answer_now = lambda *args: None  # type: ignore[method-assign]
        await harness.start()
        for raw in REQUESTS:
            client = harness.connect()
            client.send(raw)
            await _finished(client)
            outputs.append(_DATE.sub(b"", bytes(client.transport.buffer)))
        return [_LOG_TIME.sub("[]", line) for line in harness.access if line]

    log = asyncio.run(main())
    return outputs, log


async def _finished(client: Client, timeout: float = 5.0) -> None:
    """Until the connection has answered (it is idle again, or closed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while client.protocol.task is not None or not client.transport.buffer:
        assert loop.time() < deadline, "no answer in time"
        await asyncio.sleep(0.001)
    await client.settle()


def test_the_fast_path_answers_exactly_as_the_task_path(tmp_path: Path, root: Path) -> None:
    fast_bytes, fast_log = _serve_all(tmp_path, root, fast=True)
    slow_bytes, slow_log = _serve_all(tmp_path, root, fast=False)
    for raw, fast, slow in zip(REQUESTS, fast_bytes, slow_bytes, strict=True):
        assert fast == slow, raw
    assert fast_log == slow_log
    assert len(fast_log) == len(REQUESTS)


def _answered_at_once(client: Client, raw: bytes) -> bool:
    """Sent, and the whole answer was written before data_received returned, with no task."""
    before = len(client.transport.buffer)
    client.send(raw)
    return len(client.transport.buffer) > before and client.protocol.task is None


def test_plain_requests_are_answered_without_a_task(tmp_path: Path, root: Path) -> None:
    async def main() -> None:
        harness = Harness(SITE.format(root=root), tmp_path)
        await harness.start()
        client = harness.connect()
        get = b"GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n"
        assert _answered_at_once(client, get % b"/ok")
        assert _answered_at_once(client, get % b"/gone")
        assert _answered_at_once(client, get % b"/static/small.txt")  # read from the page cache
        # The open-file cache: the first request looks the file up (a task), then it is hot.
        assert not _answered_at_once(client, get % b"/cached/small.txt")
        await client.response()
        await client.response()
        await client.response()
        await client.response()
        await client.settle()
        assert _answered_at_once(client, get % b"/cached/small.txt")
        assert not harness.state.tasks
        # Declined, and served by a task: variables, conditionals, access rules.
        for path in (b"/who", b"/private/small.txt", b"/static/missing.txt"):
            second = harness.connect()
            assert not _answered_at_once(second, get % path)

    asyncio.run(main())


def test_pipelined_requests_mix_both_paths_in_order(tmp_path: Path, root: Path) -> None:
    async def main() -> None:
        harness = Harness(SITE.format(root=root), tmp_path)
        await harness.start()
        client = harness.connect()
        get = b"GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n"
        client.send(get % b"/ok" + get % b"/who" + get % b"/gone" + get % b"/ok")
        bodies = [await client.response() for _ in range(4)]
        assert [r.status for r in bodies] == [200, 200, 410, 200]
        assert bodies[1].body == b"127.0.0.1\n"
        assert bodies[0].body == bodies[3].body == b"fine\n"

    asyncio.run(main())


def test_keepalive_requests_and_stopping_close_fast_answers(tmp_path: Path, root: Path) -> None:
    async def main() -> None:
        harness = Harness(SITE.format(root=root), tmp_path)
        await harness.start()
        client = harness.connect()
        get = b"GET /ok HTTP/1.1\r\nHost: example.com\r\n\r\n"
        client.send(get * 6)
        answers = [await client.response() for _ in range(5)]
        assert [r.header("Connection") for r in answers] == ["keep-alive"] * 4 + ["close"]
        await client.settle()
        assert client.transport.closed  # the sixth request was never read
        harness.state.stopping = True
        other = harness.connect()
        other.send(get)
        assert (await other.response()).header("Connection") == "close"

    asyncio.run(main())


def test_a_hot_file_is_restatted_and_a_change_shows(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        harness = Harness(SITE.format(root=root), tmp_path)
        await harness.start()
        client = harness.connect()
        get = b"GET /cached/small.txt HTTP/1.1\r\nHost: example.com\r\n\r\n"
        client.send(get)
        assert (await client.response()).body == b"small file\n" * 20
        client.send(get)
        assert (await client.response()).body == b"small file\n" * 20  # hot now
        target = root / "small.txt"
        stat = target.stat()
        # Same size and mtime: within the revalidation second the hot copy is what is sent.
        target.write_bytes(b"SMALL FILE\n" * 20)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        client.send(get)
        assert (await client.response()).body == b"small file\n" * 20
        # Once the entry is due for its stat, a new inode or mtime drops it.
        monkeypatch.setattr("edge.handlers.static.REVALIDATE_AFTER", 0.0)
        replacement = root / "new.txt"
        replacement.write_bytes(b"replaced\n")
        replacement.replace(target)
        client.send(get)
        assert (await client.response()).body == b"replaced\n"

    asyncio.run(main())


def test_a_hot_file_swapped_for_a_symlink_outside_is_refused(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret\n")

    async def main() -> None:
        harness = Harness(SITE.format(root=root), tmp_path)
        await harness.start()
        monkeypatch.setattr("edge.handlers.static.REVALIDATE_AFTER", 0.0)
        client = harness.connect()
        get = b"GET /cached/small.txt HTTP/1.1\r\nHost: example.com\r\n\r\n"
        client.send(get)
        await client.response()
        client.send(get)
        assert (await client.response()).status == 200
        target = root / "small.txt"
        target.unlink()
        target.symlink_to(secret)
        client.send(get)
        answer = await client.response()
        assert answer.status == 404
        assert b"secret" not in answer.body
        assert any("a symlink leads outside the root" in line for line in harness.errors)

    asyncio.run(main())


def test_read_cached_declines_a_file_whose_pages_are_not_in_memory(root: Path) -> None:
    if not getattr(os, "RWF_NOWAIT", 0):
        pytest.fail("this kernel or Python has no RWF_NOWAIT: the cold-file rule is untested")
    target = root / "small.txt"
    size = target.stat().st_size
    fd = os.open(target, os.O_RDONLY)
    try:
        assert read_cached(fd, size) == target.read_bytes()  # warm: from the page cache
        # The kernel drops clean pages only: while it is still writing them back, ask
        # again (bounded: two seconds).
        deadline = time.monotonic() + 2.0
        while True:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            answer = read_cached(fd, size)
            if answer is None or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert answer is None  # cold: the read would have waited for the disk
    finally:
        os.close(fd)


def test_a_cold_file_is_read_in_the_thread_pool(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever read_cached declines is answered by a task whose read runs off the loop."""
    target = root / "small.txt"
    executor_reads: list[int] = []
    monkeypatch.setattr("edge.handlers.static.read_cached", lambda fd, size, offset=0: None)

    async def main() -> None:
        harness = Harness(SITE.format(root=root), tmp_path)
        await harness.start()
        loop = asyncio.get_running_loop()
        real = loop.run_in_executor

        def counting(executor, func, *args):  # type: ignore[no-untyped-def]
            if func is os.pread:
                executor_reads.append(args[1])
            return real(executor, func, *args)

        monkeypatch.setattr(loop, "run_in_executor", counting)
        client = harness.connect()
        client.send(b"GET /static/small.txt HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert client.protocol.task is not None
        answer = await client.response()
        assert answer.status == 200
        assert answer.body == target.read_bytes()

    asyncio.run(main())
    assert executor_reads == [target.stat().st_size]


def test_pipeline_declines_requests_with_a_body(tmp_path: Path, root: Path) -> None:
    async def main() -> None:
        harness = Harness(SITE.format(root=root), tmp_path)
        await harness.start()
        client = harness.connect()
        client.send(b"POST /ok HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc")
        assert client.protocol.task is not None
        assert (await client.response()).body == b"fine\n"

    asyncio.run(main())
