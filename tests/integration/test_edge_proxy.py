"""The edge's reverse proxy against real backends: our appserver and real uWSGI over
uwsgi, gunicorn over HTTP.  ProxyHandlerImpl is driven through a fake Exchange (the
HTTP front is tested on its own); the backends are real processes on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from edge.config.schema import CacheSettings, ProxyParam
from edge.exchange import UpstreamError, UpstreamTimeout
from tests.integration.conftest import APPS, WSGI_APP
from tests.support.clients import RawResponse
from tests.support.edge import read_response, request, start_edge, write_config
from tests.support.fake_exchange import (
    ProxiedLocation,
    proxy_location,
)
from tests.support.processes import TCP_ESTABLISHED, ServerProcess, tcp_connections, wait_until

VENV_BIN = Path(sys.executable).parent
UWSGI = VENV_BIN / "uwsgi"
GUNICORN = VENV_BIN / "gunicorn"

Starter = Callable[..., ServerProcess]


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coroutine, 45)

    asyncio.run(bounded())


def worker_pids(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"spawned worker \d+ \(pid: (\d+)", server.log())]


def kill_hard(server: ServerProcess) -> None:
    """SIGKILL the master and its workers: the backend vanishes, as in a crash."""
    pids = worker_pids(server)
    server.signal(signal.SIGKILL)
    server.wait()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def appservers(start_appserver: Starter) -> Callable[..., list[tuple[ServerProcess, str]]]:
    """Start N appservers (uwsgi protocol) at once; returns (process, "host:port") pairs."""

    def start(
        count: int = 1, host: str = "127.0.0.1", port: int = 0
    ) -> list[tuple[ServerProcess, str]]:
        servers = [
            start_appserver(
                "--socket", f"{host}:{port}", "--wsgi-file", str(WSGI_APP), "--threads", "4"
            )
            for _ in range(count)
        ]
        result = []
        for server in servers:
            server.wait_ready(1)
            address_host, address_port = server.address("uwsgi")
            result.append((server, f"{address_host}:{address_port}"))
        return result

    return start


@cache
def _gunicorn_extra_args() -> tuple[str, ...]:
    # gunicorn >= 25 opens a control socket in $HOME unless told not to.
    help_text = subprocess.run(
        [str(GUNICORN), "--help"], capture_output=True, text=True, check=False
    ).stdout
    return ("--no-control-socket",) if "--no-control-socket" in help_text else ()


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    server = ServerProcess(
        [
            str(GUNICORN),
            "-b",
            "127.0.0.1:0",
            "-k",
            "gthread",
            "--threads",
            "4",
            "--keep-alive",
            "1",
            *_gunicorn_extra_args(),
            "--chdir",
            str(APPS),
            "wsgi_app:application",
        ],
        cwd=tmp_path,
        log_path=tmp_path / "gunicorn.log",
    ).start()
    try:
        match = server.wait_for_log(r"Listening at: http://127\.0\.0\.1:(\d+)")
        server.wait_for_log(r"Booting worker")
        yield server, f"127.0.0.1:{match.group(1)}"
    finally:
        server.stop()
    assert "AssertionError" not in server.log(), server.log()


@pytest.fixture
def real_uwsgi(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    socket_path = tmp_path / "uwsgi.sock"
    server = ServerProcess(
        [
            str(UWSGI),
            "--socket",
            str(socket_path),
            "--wsgi-file",
            str(WSGI_APP),
            "--master",
            "--processes",
            "2",
            "--need-app",
            "--buffer-size",
            "32768",
            "--die-on-term",
        ],
        cwd=tmp_path,
        log_path=tmp_path / "uwsgi.log",
    ).start()
    try:
        server.wait_for_log(r"spawned uWSGI worker 2")
        yield server, f"unix:{socket_path}"
    finally:
        server.stop()
    assert "AssertionError" not in server.log(), server.log()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def check_bodies(proxy: ProxiedLocation) -> None:
    """GET with a query, a 5 MB POST, a chunked 3 MB POST and a streamed response."""
    data = await proxy.json("/echo?q=caf%C3%A9")
    assert (data["method"], data["query"]) == ("GET", "q=caf%C3%A9")
    big = os.urandom(5 * 1024 * 1024)
    sink = await proxy.request("POST", "/echo", body=big)
    assert sink.status == 200
    assert json.loads(sink.body)["sha256"] == sha(big)
    chunked = os.urandom(3 * 1024 * 1024)
    sink = await proxy.request("POST", "/echo", body=chunked, chunked=True)
    assert sink.status == 200, sink.body
    assert (json.loads(sink.body)["size"], json.loads(sink.body)["sha256"]) == (
        len(chunked),
        sha(chunked),
    )
    sink = await proxy.request("GET", "/stream?3000")
    assert sink.status == 200 and sink.ended
    assert sink.body == b"".join(f"chunk {i}\n".encode() for i in range(3000))
    assert len(sink.chunks) > 1  # relayed as it came, not as one buffered blob
    sink = await proxy.request("GET", "/nowhere")
    assert (sink.status, sink.body) == (404, b"not found\n")


def test_appserver_over_uwsgi(appservers: Callable[..., list[tuple[ServerProcess, str]]]) -> None:
    [(_, address)] = appservers(1)

    async def scenario() -> None:
        async with ProxiedLocation(proxy_location(), address) as proxy:
            await check_bodies(proxy)
            environ = await proxy.json(
                "/environ?x=1", headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")]
            )
            assert environ["REQUEST_URI"] == "/environ?x=1"
            assert environ["HTTP_COOKIE"] == "a=1; b=2"
            assert environ["HTTP_HOST"] == "localhost"
            assert proxy.last.request.upstream.addr == address

    run(scenario())


def test_real_uwsgi(real_uwsgi: tuple[ServerProcess, str]) -> None:
    server, address = real_uwsgi
    # uWSGI leaves SCRIPT_NAME out of the environ unless the web server sends it
    # (PEP 3333 wants it): `uwsgi_param SCRIPT_NAME ""`, as nginx users do.
    location = proxy_location(params=(ProxyParam("SCRIPT_NAME", ""),))

    async def scenario() -> None:
        async with ProxiedLocation(location, address) as proxy:
            await check_bodies(proxy)
            environ = await proxy.json("/environ?x=1", headers=[(b"x-custom", b"yes")])
            for key, value in {
                "REQUEST_METHOD": "GET",
                "QUERY_STRING": "x=1",
                "REQUEST_URI": "/environ?x=1",
                "PATH_INFO": "/environ",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REMOTE_ADDR": "127.0.0.1",
                "HTTP_X_CUSTOM": "yes",
                "SCRIPT_NAME": "",
            }.items():
                assert environ[key] == value, key
            # uWSGI does not know the keep-alive offer: it answers raw and closes, as
            # for nginx, so no connection of its is ever pooled.
            assert environ["WSGISTACK_KEEPALIVE"] == "1"
            pool = proxy.runtime.pool("app")
            assert len(pool) == 0 and pool.reused == 0 and pool.opened >= 6

    run(scenario())
    assert server.count(r"\(HTTP/1.1 200\)") >= 5


def test_gunicorn_over_http_with_keepalive(gunicorn: tuple[ServerProcess, str]) -> None:
    server, address = gunicorn
    host, _, port = address.rpartition(":")
    upstream = (host, int(port))

    def pooled_connection_closed_by_gunicorn() -> bool:
        return not [
            row
            for row in tcp_connections(os.getpid())
            if row.remote == upstream and row.state == TCP_ESTABLISHED
        ]

    async def scenario() -> None:
        location = proxy_location(protocol="http")
        async with ProxiedLocation(location, address, keepalive=8) as proxy:
            await check_bodies(proxy)
            ports = set()
            for _ in range(20):
                environ = await proxy.json("/environ")
                ports.add(environ["REMOTE_PORT"])
                assert environ["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
                assert environ["HTTP_X_REAL_IP"] == "127.0.0.1"
                assert environ["HTTP_X_FORWARDED_PROTO"] == "http"
                assert environ["HTTP_HOST"] == "localhost"
            assert len(ports) == 1, ports  # twenty requests, one pooled connection
            pool = proxy.runtime.pool("app")
            opened = pool.opened
            # gunicorn drops idle connections after --keep-alive 1: the next request must
            # neither fail nor see a 502 (pain point #9).
            await asyncio.to_thread(
                wait_until,
                pooled_connection_closed_by_gunicorn,
                timeout=10,
                what="gunicorn to close the idle pooled connection",
                process=server,
            )
            environ = await proxy.json("/environ")
            assert environ["REMOTE_PORT"] not in ports
            assert pool.opened == opened + 1
            assert not proxy.log.matching("failed"), str(proxy.log)

    run(scenario())


def test_load_spread_and_a_killed_backend(
    appservers: Callable[..., list[tuple[ServerProcess, str]]],
) -> None:
    backends = appservers(3)
    addresses = [address for _, address in backends]

    async def scenario() -> None:
        async with ProxiedLocation(proxy_location(), *addresses) as proxy:
            pids: dict[int, int] = {}
            for _ in range(30):
                pid = (await proxy.json("/pid"))["pid"]
                pids[pid] = pids.get(pid, 0) + 1
            assert sorted(pids.values()) == [10, 10, 10], pids
            kill_hard(backends[1][0])
            seen = set()
            for _ in range(30):
                seen.add((await proxy.json("/pid"))["pid"])
            assert len(seen) == 2
            # One failed attempt names the dead peer: refused, or (when the kernel had
            # completed the connect as the process died) lost at the send or the first
            # read.  Then it is out for fail_timeout and nobody notices.
            errors = [m for level, m in proxy.log.lines if level == "error"]
            assert len(errors) == 1, str(proxy.log)
            assert re.match(
                r"(connect\(\) to|send\(\) to|recv\(\) from) " + re.escape(addresses[1]), errors[0]
            )
            assert f'upstream: "uwsgi://{addresses[1]}"' in errors[0]
            assert proxy.log.matching("upstream server temporarily disabled")

    run(scenario())


def test_hung_backend_gives_504(appservers: Callable[..., list[tuple[ServerProcess, str]]]) -> None:
    [(_, address)] = appservers(1)

    async def scenario() -> None:
        async with ProxiedLocation(proxy_location(read_timeout=0.5), address) as proxy:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(UpstreamTimeout) as info:
                await proxy.request("GET", "/slow?2")
            assert loop.time() - started < 1.5
            assert proxy.last.request.upstream.url == f"uwsgi://{address}"
        message = str(info.value)
        assert info.value.status == 504
        assert message.startswith(
            "upstream timed out (110: Connection timed out) while reading response header"
        )

    run(scenario())


def test_all_backends_down(appservers: Callable[..., list[tuple[ServerProcess, str]]]) -> None:
    backends = appservers(2)
    for server, _ in backends:
        server.stop()

    async def scenario() -> None:
        async with ProxiedLocation(proxy_location(), *(a for _, a in backends)) as proxy:
            with pytest.raises(UpstreamError) as first:
                await proxy.request()
            assert "Connection refused) while connecting to upstream" in str(first.value)
            with pytest.raises(UpstreamError) as second:
                await proxy.request()
        assert str(second.value).startswith('no live upstreams while connecting to upstream "app"')
        assert second.value.status == 502

    run(scenario())


def test_dns_re_resolution_picks_up_a_scaled_service(
    appservers: Callable[..., list[tuple[ServerProcess, str]]],
) -> None:
    # Two replicas on one port, as docker compose gives them: 127.0.0.1:P and 127.0.0.2:P.
    [(first, first_address)] = appservers(1)
    port = int(first_address.rpartition(":")[2])
    [(second, _)] = appservers(1, host="127.0.0.2", port=port)
    answers: dict[str, Sequence[str]] = {"appserver.test": ["127.0.0.1"]}

    async def fake_dns(host: str, _port: int) -> Sequence[str]:
        return answers[host]

    async def pids(proxy: ProxiedLocation, count: int = 8) -> set[int]:
        return {(await proxy.json("/pid"))["pid"] for _ in range(count)}

    async def wait_for_peers(proxy: ProxiedLocation, count: int) -> None:
        for _ in range(100):
            if len(proxy.runtime.balancer("app").peers) == count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(str(proxy.log))

    async def scenario() -> None:
        location = proxy_location()
        async with ProxiedLocation(
            location, f"appserver.test:{port}", dns=fake_dns, resolve=0.1
        ) as proxy:
            assert await pids(proxy) == set(worker_pids(first))
            answers["appserver.test"] = ["127.0.0.1", "127.0.0.2"]  # --scale appserver=2
            await wait_for_peers(proxy, 2)
            assert await pids(proxy) == set(worker_pids(first)) | set(worker_pids(second))
            assert proxy.log.matching(f"added 127.0.0.2:{port}")
            answers["appserver.test"] = ["127.0.0.2"]  # the first replica went away
            await wait_for_peers(proxy, 1)
            assert await pids(proxy) == set(worker_pids(second))
            assert proxy.log.matching(f"removed 127.0.0.1:{port}")

    run(scenario())


def test_microcache_in_front_of_the_app(
    appservers: Callable[..., list[tuple[ServerProcess, str]]],
) -> None:
    [(server, address)] = appservers(1)

    async def scenario() -> None:
        location = proxy_location(cache=CacheSettings(valid=((200, 30.0), (404, 30.0))))
        async with ProxiedLocation(location, address) as proxy:
            miss = await proxy.request("GET", "/pid")
            hit = await proxy.request("GET", "/pid")
            assert (miss.header("x-cache"), hit.header("x-cache")) == ("MISS", "HIT")
            assert hit.body == miss.body
            assert (await proxy.request("GET", "/nowhere")).header("x-cache") == "MISS"
            assert (await proxy.request("GET", "/nowhere")).header("x-cache") == "HIT"
            assert (await proxy.request("POST", "/echo", body=b"x")).header("x-cache") is None

    run(scenario())
    # Two of the five requests reached the app.  Its request line is written after the
    # response has left, so it may lag the proxy's answer a little.
    server.wait_for_log(r"GET /nowhere ", timeout=5)
    assert server.count(r"GET /pid ") == 1 and server.count(r"GET /nowhere ") == 1


# --- end to end: a real edge process in front of the backends ---------------------------


def _chunked_post(address: tuple[str, int], target: str, body: bytes) -> RawResponse:
    pieces = [
        b"%x\r\n%s\r\n" % (len(body[i : i + 100_000]), body[i : i + 100_000])
        for i in range(0, len(body), 100_000)
    ]
    head = (
        f"POST {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head + b"".join(pieces) + b"0\r\n\r\n")
        return read_response(sock)


def test_end_to_end_through_an_edge_process(
    appservers: Callable[..., list[tuple[ServerProcess, str]]],
    gunicorn: tuple[ServerProcess, str],
    tmp_path: Path,
) -> None:
    [(_, app_address)] = appservers(1)
    _, gunicorn_address = gunicorn
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    config = write_config(
        tmp_path,
        f"""
error_log: {{level: info}}
upstreams:
  app: {{servers: ["{app_address}"]}}
  gunicorn: {{servers: ["{gunicorn_address}"], keepalive: 4}}
  dead: {{servers: ["{dead}"]}}
servers:
  - listen: 127.0.0.1:0
    client_max_body_size: 10m
    locations:
      - path: /
        proxy: app
      - path: = /dead
        proxy: dead
  # Another address: two `listen: 127.0.0.1:0` lines would be one socket, as in nginx.
  - listen: 127.0.0.3:0
    client_max_body_size: 10m
    locations:
      - path: /
        proxy: gunicorn
        protocol: http
""",
    )
    edge = start_edge(["-c", str(config)], cwd=tmp_path, log_path=tmp_path / "edge.log")
    try:
        uwsgi_front, http_front = edge.ready(2)
        for front in (uwsgi_front, http_front):
            response = request(front, "GET", "/echo?q=1")
            assert response.status == 200, response
            assert json.loads(response.body)["query"] == "q=1"
            body = os.urandom(5 * 1024 * 1024)
            response = request(front, "POST", "/echo", body=body)
            assert json.loads(response.body)["sha256"] == sha(body)
            chunked = os.urandom(2 * 1024 * 1024)
            response = _chunked_post(front, "/echo", chunked)
            assert json.loads(response.body)["sha256"] == sha(chunked), response
            response = request(front, "GET", "/stream?2000")
            assert response.body == b"".join(f"chunk {i}\n".encode() for i in range(2000))
        ports = {
            json.loads(request(http_front, "GET", "/environ").body)["REMOTE_PORT"] for _ in range(5)
        }
        assert len(ports) == 1  # the edge kept one connection to gunicorn
        response = request(uwsgi_front, "GET", "/dead")
        assert response.status == 502
        edge.wait_for_log(
            re.escape(
                f"connect() to {dead} failed (111: Connection refused) while connecting to"
                " upstream (hint: is the app server running and listening on that address?),"
                ' client: 127.0.0.1, server: , request: "GET /dead HTTP/1.1",'
                f' upstream: "uwsgi://{dead}", host: "localhost"'
            ),
            timeout=5,
        )
    finally:
        edge.stop()


# --- persistent uwsgi connections to a real appserver (docs/uwsgi-keepalive.md) ------------


def test_edge_keeps_its_uwsgi_connections_to_appserver(
    appservers: Callable[..., list[tuple[ServerProcess, str]]],
) -> None:
    """GETs, a POST with a body, a streamed (chunked) answer, a file, HEAD: one connection."""
    [(_, address)] = appservers(1)
    payload = os.urandom(200_000)

    async def scenario() -> None:
        async with ProxiedLocation(proxy_location(), address) as proxy:
            for _ in range(10):
                assert (await proxy.json("/pid"))["pid"]
            echoed = await proxy.request("POST", "/echo", body=payload)
            assert json.loads(echoed.body)["sha256"] == hashlib.sha256(payload).hexdigest()
            streamed = await proxy.request("GET", "/stream?3")
            assert streamed.body == b"chunk 0\nchunk 1\nchunk 2\n"
            served = await proxy.request("GET", "/file")
            assert served.body == (APPS / "wsgi_app.py").read_bytes()
            head = await proxy.request("HEAD", "/pid")
            assert head.status == 200 and head.body == b""
            assert (await proxy.request("GET", "/missing")).status == 404
            assert (await proxy.json("/pid"))["pid"]
            pool = proxy.runtime.pool("app")
            assert (pool.opened, pool.reused) == (1, 15)
            assert "wsgistack-keepalive" not in served.header_names()
            # The app never sees the offer.
            environ = await proxy.json("/environ")
            assert "WSGISTACK_KEEPALIVE" not in environ

    run(scenario())


def test_a_pooled_connection_to_a_respawned_worker_is_retried_once(
    appservers: Callable[..., list[tuple[ServerProcess, str]]],
) -> None:
    """The worker holding our idle connection dies: an idempotent request is retried, a POST is not."""
    [(server, address)] = appservers(1)

    async def scenario() -> None:
        async with ProxiedLocation(proxy_location(), address) as proxy:
            first = (await proxy.json("/pid"))["pid"]
            os.kill(first, signal.SIGKILL)
            server.wait_ready(2)  # the master has spawned the replacement
            second = (await proxy.json("/pid"))["pid"]
            assert second != first
            assert proxy.log.matching("on a kept-alive connection, retrying on a new one")
            assert proxy.runtime.pool("app").opened == 2
            os.kill(second, signal.SIGKILL)
            server.wait_ready(3)
            with pytest.raises(UpstreamError):
                await proxy.request("POST", "/echo", body=b"sent once at most")

    run(scenario())
