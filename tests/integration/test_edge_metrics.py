"""Edge's metrics, stub_status, status page and request IDs against a real edge (issue 11).

The edge runs two workers (SO_REUSEPORT spreads the test's connections over
both) in front of a real appserver over uwsgi and over HTTP.  Every figure is
checked against the traffic the test itself sent: N requests are exactly N
in the counters summed over the workers, also after a worker is SIGKILLed and
respawned, and after a SIGHUP reload.  The real ``promtool`` lints the
exposition, the real ``prometheus-nginx-exporter`` reads stub_status, and
headless Chromium renders the status page (its screenshot is kept under
build/screenshots/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import WSGI_APP
from tests.support import chromium
from tests.support.clients import RawResponse
from tests.support.edge import EdgeProcess, read_response, request, start_edge, write_config
from tests.support.processes import ServerProcess, wait_until

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
EXPORTER = shutil.which("prometheus-nginx-exporter") or "/usr/bin/prometheus-nginx-exporter"

CONFIG = """
worker_processes: 2
error_log: {{level: warn}}
access_log: {{path: {access}, format: traced}}
log_formats:
  traced:
    format: '{{"id":"$request_id","status":$status,"request":"$request","upstream":"$upstream_addr"}}'
    escape: json
request_id: {{to_upstream: true, trust_incoming: {trust}}}
upstreams:
  app: {{servers: ["{uwsgi}"], resolve: off}}
  web: {{servers: ["{http}"], resolve: off}}
servers:
  - listen: 127.0.0.1:0
    locations:
      - path: /n/
        return: {{status: 200, body: "ok\\n"}}
      - path: = /healthz
        return: {{status: 200, body: "ok\\n"}}
        access_log: off
      - path: /
        proxy: app
        protocol: uwsgi
  - listen: 127.0.0.2:0
    locations:
      - path: = /metrics
        metrics: prometheus
        access: [allow 127.0.0.1, deny all]
      - path: = /stub_status
        stub_status: true
        access: [allow 127.0.0.1, deny all]
      - path: = /status
        status_page: html
        access: [allow 127.0.0.1, deny all]
      - path: = /status.json
        status_page: json
        access: [allow 127.0.0.1, deny all]
  - listen: 127.0.0.4:0
    locations:
      - path: /
        proxy: web
        protocol: http
"""

Starter = Callable[..., ServerProcess]


class Edge:
    def __init__(
        self,
        process: EdgeProcess,
        site: tuple[str, int],
        admin: tuple[str, int],
        web: tuple[str, int],
    ) -> None:
        self.process = process
        self.site = site  # "/n/" answered by edge, "/" proxied to appserver over uwsgi
        self.admin = admin  # the observability server
        self.web = web  # "/" proxied to appserver over HTTP

    def get(
        self, target: str, headers: dict[str, str] | None = None, *, web: bool = False
    ) -> tuple[int, bytes, dict[str, str]]:
        response = request(self.web if web else self.site, target=target, headers=headers)
        return response.status, response.body, _headers(response)

    def admin_get(self, target: str) -> bytes:
        response = _from(self.admin, target)
        assert response.status == 200, (target, response.status, response.body[:300])
        return response.body

    def metrics(self) -> str:
        return self.admin_get("/metrics").decode()

    def sample(self, name: str, **labels: str) -> float:
        return sample(self.metrics(), name, **labels)


def _headers(response: RawResponse) -> dict[str, str]:
    return {name.lower(): value for name, value in response.headers}


def _from(address: tuple[str, int], target: str) -> RawResponse:
    """A GET to the admin server from 127.0.0.1 (the allowed client)."""
    with socket.create_connection(address, timeout=10, source_address=("127.0.0.1", 0)) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
        return read_response(sock, timeout=10)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition text (0 when the series is absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)", line)
        assert match, f"not an exposition line: {line!r}"
        if match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return 0.0


@pytest.fixture
def backends(start_appserver: Starter) -> tuple[str, str]:
    uwsgi = start_appserver(
        "--socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--threads", "4"
    )
    http = start_appserver(
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--threads", "4"
    )
    uwsgi.wait_ready(1)
    http.wait_ready(1)
    u_host, u_port = uwsgi.address("uwsgi")
    h_host, h_port = http.address("http")
    return f"{u_host}:{u_port}", f"{h_host}:{h_port}"


def _start(tmp_path: Path, backends: tuple[str, str], trust: bool) -> Iterator[Edge]:
    text = CONFIG.format(
        access=tmp_path / "access.log",
        trust="true" if trust else "false",
        uwsgi=backends[0],
        http=backends[1],
    )
    config = write_config(tmp_path, text)
    process = start_edge(["-c", str(config)], cwd=tmp_path, log_path=tmp_path / "edge.log")
    try:
        site, admin, web = process.ready(3)
        edge = Edge(process, site, admin, web)
        process.wait_for_log(r"spawned worker 2 \(pid \d+\)")
        wait_until(
            lambda: edge.sample("edge_workers") == 2,
            timeout=15,
            what="two workers",
            process=process,
        )
        yield edge
    finally:
        process.stop()


@pytest.fixture
def edge(tmp_path: Path, backends: tuple[str, str]) -> Iterator[Edge]:
    yield from _start(tmp_path, backends, trust=True)


def _requests(edge: Edge, location: str, status: str = "2xx") -> float:
    server = f"{edge.site[0]}:0"
    return edge.sample("edge_http_requests_total", server=server, location=location, status=status)


def _send(edge: Edge, count: int, target: str = "/n/x") -> None:
    for _ in range(count):
        status, _body, _ = edge.get(target)
        assert status == 200


def _pids_serving(edge: Edge) -> set[int]:
    document = json.loads(edge.admin_get("/status.json"))
    return {worker["pid"] for worker in document["workers"]}


def test_counts_are_exact_across_workers_a_respawn_and_a_reload(edge: Edge) -> None:
    n = 40
    assert _requests(edge, "/n/") == 0
    _send(edge, n)
    assert _requests(edge, "/n/") == n
    status, _, _ = edge.get("/n/../n/y")  # normalized: still /n/
    assert status == 200 and _requests(edge, "/n/") == n + 1
    # Fresh connections spread over both workers: each has served some of them.
    workers = json.loads(edge.admin_get("/status.json"))["workers"]
    assert len(workers) == 2
    accepted_before = edge.sample("edge_connections_accepted_total")
    assert accepted_before >= n + 1

    # SIGKILL one worker: its counts must survive in the retained totals.
    victim = sorted(_pids_serving(edge))[0]
    restarts = edge.sample("edge_worker_restarts_total")
    os.kill(victim, signal.SIGKILL)
    edge.process.wait_for_log(rf"worker process {victim} exited on signal 9")
    wait_until(
        lambda: victim not in _pids_serving(edge) and len(_pids_serving(edge)) == 2,
        timeout=15,
        what="the respawned worker",
        process=edge.process,
    )
    assert edge.sample("edge_worker_restarts_total") == restarts + 1
    assert _requests(edge, "/n/") == n + 1
    _send(edge, n)
    assert _requests(edge, "/n/") == 2 * n + 1

    # SIGHUP: a new generation, the old one exits; nothing resets, nothing doubles.
    reloads = edge.sample("edge_config_reloads_total")
    before = edge.sample("edge_config_last_reload_success_timestamp_seconds")
    old = _pids_serving(edge)
    edge.process.signal(signal.SIGHUP)
    edge.process.wait_for_log(r"reload complete")
    wait_until(
        lambda: not (_pids_serving(edge) & old) and len(_pids_serving(edge)) == 2,
        timeout=30,
        what="the old generation to exit",
        process=edge.process,
    )
    assert edge.sample("edge_config_reloads_total") == reloads + 1
    assert edge.sample("edge_config_last_reload_success_timestamp_seconds") > before
    assert _requests(edge, "/n/") == 2 * n + 1
    _send(edge, n)
    assert _requests(edge, "/n/") == 3 * n + 1
    assert edge.sample("edge_connections_accepted_total") >= accepted_before + 2 * n


def test_proxied_requests_fill_the_histograms_and_a_5xx_gets_a_warn_line(
    edge: Edge, tmp_path: Path
) -> None:
    for _ in range(5):
        assert edge.get("/x/../pid")[0] == 200
    for _ in range(3):
        assert edge.get("/pid", web=True)[0] == 200
    text = edge.metrics()
    # process.ready() sent one "HEAD /" to the app too.
    assert sample(text, "edge_http_request_duration_seconds_count", upstream="app") == 6
    assert sample(text, "edge_upstream_response_seconds_count", upstream="app") == 6
    assert sample(text, "edge_http_request_duration_seconds_count", upstream="web") == 3
    assert sample(text, "edge_http_request_duration_seconds_bucket", upstream="app", le="+Inf") == 6
    assert sample(text, "edge_http_request_duration_seconds_sum", upstream="app") > 0
    assert sample(text, "edge_upstream_peer_up", upstream="app") == 1

    # The app raises: appserver answers 500, edge logs one warn line naming the peer,
    # the status and the request ID, and the access log has the same ID.
    status, _, _ = edge.get("/boom", headers={"X-Request-ID": "trace-boom-1"})
    assert status == 500
    line = edge.process.wait_for_log(r"\[warn\] .*upstream \"app\" peer \S+ answered 500.*")
    assert "request_id: trace-boom-1" in line.group(0)
    assert _requests(edge, "/", "5xx") == 1
    # Each worker publishes its last error lines with its once-a-second snapshot.
    wait_until(
        lambda: any(
            "trace-boom-1" in entry["line"]
            for entry in json.loads(edge.admin_get("/status.json"))["errors"]
        ),
        timeout=10,
        what="the warn line in /status.json",
    )
    wait_until(
        lambda: '"id":"trace-boom-1","status":500' in (tmp_path / "access.log").read_text(),
        timeout=10,
        what="the access-log line",
    )


def test_request_ids_go_upstream_and_into_the_access_log(edge: Edge, tmp_path: Path) -> None:
    status, body, _ = edge.get("/environ", headers={"X-Request-ID": "client-id-7"})
    assert status == 200 and json.loads(body)["HTTP_X_REQUEST_ID"] == "client-id-7"
    status, body, _ = edge.get("/environ", headers={"X-Request-ID": "client-id-8"}, web=True)
    assert status == 200 and json.loads(body)["HTTP_X_REQUEST_ID"] == "client-id-8"
    # Not sane (a space): a new ID, 32 hex digits, the same in the app and the log.
    status, body, _ = edge.get("/environ", headers={"X-Request-ID": "a b"})
    made = json.loads(body)["HTTP_X_REQUEST_ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made), made
    status, body, _ = edge.get("/environ", web=True)
    made_http = json.loads(body)["HTTP_X_REQUEST_ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_http) and made_http != made

    def logged() -> bool:
        text = (tmp_path / "access.log").read_text()
        return all(f'"id":"{rid}"' in text for rid in ("client-id-7", "client-id-8", made))

    wait_until(logged, timeout=10, what="the IDs in the access log")
    # Health checks stay out of the access log (access_log: off on the location).
    assert edge.get("/healthz")[0] == 200
    assert edge.get("/n/after-healthz")[0] == 200
    wait_until(
        lambda: "/after-healthz" in (tmp_path / "access.log").read_text(),
        timeout=10,
        what="the line after the health check",
    )
    assert "/healthz" not in (tmp_path / "access.log").read_text()
    assert _requests(edge, "= /healthz") == 1  # counted all the same


def test_an_untrusted_incoming_id_is_replaced(tmp_path: Path, backends: tuple[str, str]) -> None:
    for edge in _start(tmp_path, backends, trust=False):
        status, body, _ = edge.get("/environ", headers={"X-Request-ID": "client-id-9"})
        made = json.loads(body)["HTTP_X_REQUEST_ID"]
        assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", made), made


def test_promtool_accepts_the_exposition(edge: Edge, tmp_path: Path) -> None:
    edge.get("/pid")
    edge.get("/pid", web=True)
    text = edge.metrics()
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"promtool:\n{result.stdout}{result.stderr}\n{text}"
    for family in (
        "edge_connections_accepted_total",
        "edge_connections_active",
        "edge_http_requests_total",
        "edge_http_request_duration_seconds",
        "edge_upstream_response_seconds",
        "edge_upstream_peer_up",
        "edge_config_reloads_total",
        "edge_worker_restarts_total",
    ):
        assert f"# TYPE {family} " in text, family


def test_the_admin_server_refuses_other_clients(edge: Edge) -> None:
    # 127.0.0.3 is loopback too, but not in the allow list.
    with socket.create_connection(edge.admin, timeout=10, source_address=("127.0.0.3", 0)) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        assert sock.recv(64).startswith(b"HTTP/1.1 403 ")


def test_stub_status_is_nginx_s_format_and_the_exporter_reads_it(
    edge: Edge, tmp_path: Path
) -> None:
    _send(edge, 10)
    text = edge.admin_get("/stub_status").decode()
    match = re.fullmatch(
        r"Active connections: (\d+) \nserver accepts handled requests\n (\d+) (\d+) (\d+) \n"
        r"Reading: (\d+) Writing: (\d+) Waiting: (\d+) \n",
        text,
    )
    assert match, repr(text)
    active, accepts, handled, requests, reading, writing, waiting = map(int, match.groups())
    assert active >= 1 and writing >= 1  # this request
    assert accepts == handled and accepts >= 11 and requests >= 10
    assert active == reading + writing + waiting

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter_log = open(tmp_path / "exporter.log", "wb")  # noqa: SIM115 - closed below
    exporter = subprocess.Popen(
        [
            EXPORTER,
            f"--nginx.scrape-uri=http://{edge.admin[0]}:{edge.admin[1]}/stub_status",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=exporter_log,
        stderr=subprocess.STDOUT,
    )
    try:
        scraped: dict[str, str] = {}

        def read() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
            except OSError:
                return False
            scraped["text"] = data.decode(errors="replace")
            return "nginx_up 1" in scraped["text"]

        wait_until(read, timeout=20, what="the exporter to scrape edge")
        text = scraped["text"]
        assert sample_of(text, "nginx_connections_accepted") >= accepts
        assert sample_of(text, "nginx_connections_handled") >= handled
        assert sample_of(text, "nginx_http_requests_total") >= requests
        assert sample_of(text, "nginx_connections_active") >= 1
    finally:
        exporter.terminate()
        exporter.wait(10)
        exporter_log.close()


def sample_of(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    assert match, f"{name} not in the exporter's output:\n{text}"
    return float(match.group(1))


def test_the_status_page_in_headless_chromium(edge: Edge, tmp_path: Path) -> None:
    for _ in range(3):
        edge.get("/pid")
    edge.get("/boom", headers={"X-Request-ID": "page-boom"})
    edge.process.wait_for_log(r"request_id: page-boom")
    # The worker that logged it publishes its error lines with its once-a-second snapshot.
    wait_until(
        lambda: any(
            "page-boom" in entry["line"]
            for entry in json.loads(edge.admin_get("/status.json"))["errors"]
        ),
        timeout=10,
        what="the warn line in /status.json",
    )
    url = f"http://{edge.admin[0]}:{edge.admin[1]}/status"
    # Chromium connects from 127.0.0.1 (loopback's default source): allowed.
    page = chromium.dump_dom(url, tmp_path)
    assert "edge status" in page, page
    assert "updated " in page and "by worker" in page, page  # the script rendered the JSON
    assert _uwsgi_peer(edge) in page and ">up<" in page, page
    assert "page-boom" in page, page  # the last errors
    kept = chromium.screenshot(url, tmp_path, "edge-status.png")
    print(f"status page screenshot: {kept}")


def _uwsgi_peer(edge: Edge) -> str:
    document = json.loads(edge.admin_get("/status.json"))
    (app,) = [upstream for upstream in document["upstreams"] if upstream["name"] == "app"]
    return str(app["peers"][0]["peer"])
