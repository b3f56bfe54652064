"""One request ID through edge, appserver and Django's logs (issue 11, items 3-5).

A real edge (request_id.trust_incoming and to_upstream on) proxies over uwsgi
to a real appserver running the Django sample with deploy/appserver.ini's
log-format and log-drain.  For a request the test names (``X-Request-ID:
e2e-<uuid>``) and for one edge names itself, the same ID must show in edge's
access log, appserver's request line and Django's log line.  A failing view
gives appserver's one-line summary (ID, exception, file:line in views.py) and
edge's 5xx warn line with the same ID.  Everything waits on log lines.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import uwsgiproto
from appserver.ini import read_ini
from tests.integration.conftest import SAMPLEAPP, WSGI_APP
from tests.support.edge import EdgeProcess, request, start_edge, write_config
from tests.support.processes import REPO, ServerProcess, wait_until

DEPLOY_INI = REPO / "deploy" / "appserver.ini"
VIEWS = SAMPLEAPP / "shop" / "views.py"

EDGE_CONFIG = """
worker_processes: 1
error_log: {{level: warn}}
access_log: {{path: {access}, format: traced}}
log_formats:
  traced:
    format: '{{"id":"$request_id","status":$status,"request":"$request"}}'
    escape: json
request_id: {{to_upstream: true, trust_incoming: true}}
upstreams:
  app: {{servers: ["{uwsgi}"], resolve: off}}
servers:
  - listen: 127.0.0.1:0
    locations:
      - path: /
        proxy: app
        protocol: uwsgi
"""

Starter = Callable[..., ServerProcess]


def _deploy_option(key: str) -> str:
    [value] = [entry.value for entry in read_ini(str(DEPLOY_INI), cwd="/") if entry.key == key]
    assert value is not None
    return value


def _line_of(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    [number] = [n for n, line in enumerate(lines, 1) if text in line]
    return number


class Stack:
    def __init__(self, edge: EdgeProcess, site: tuple[str, int], app: ServerProcess, access: Path):
        self.edge = edge
        self.site = site
        self.app = app
        self.access = access

    def get(self, target: str, headers: dict[str, str] | None = None) -> int:
        return request(self.site, target=target, headers=headers, timeout=30).status

    def access_entry(self, request_line: str) -> dict[str, object]:
        """Edge's access-log entry for ``request_line`` (e.g. "GET /hello HTTP/1.1")."""

        def find() -> dict[str, object] | None:
            try:
                text = self.access.read_text()
            except FileNotFoundError:
                return None
            for line in text.splitlines():
                entry = json.loads(line)
                if entry["request"] == request_line:
                    return dict(entry)
            return None

        return wait_until(find, timeout=15, what=f"access log: {request_line}", process=self.edge)


@pytest.fixture
def stack(start_appserver: Starter, django_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    # One process, one thread: lines come out in request order, so "the line after X"
    # proves X's line (had there been one) was already written.
    app = start_appserver(
        "--socket", "127.0.0.1:0", "--chdir", str(SAMPLEAPP),
        "--module", "sampleapp.wsgi:application", "--master", "--processes", "1",
        "--threads", "1",
        "--log-format", _deploy_option("log-format"),
        "--log-drain", _deploy_option("log-drain"),
        cwd=SAMPLEAPP.parent, env={**django_env, "DJANGO_LOG_REQUESTS": "1"},
    )  # fmt: skip
    app.wait_ready(1)
    host, port = app.address("uwsgi")
    access = tmp_path / "access.log"
    config = write_config(tmp_path, EDGE_CONFIG.format(access=access, uwsgi=f"{host}:{port}"))
    edge = start_edge(["-c", str(config)], cwd=tmp_path, log_path=tmp_path / "edge.log")
    try:
        [site] = edge.ready(1)
        yield Stack(edge, site, app, access)
    finally:
        edge.stop()


def _appserver_line(app: ServerProcess, method: str, uri: str) -> re.Match[str]:
    return app.wait_for_log(
        rf"\[pid: \d+\|worker: 1\|core: 0\] 127\.0\.0\.1 \(-\) \[[^]]+\] {method} {re.escape(uri)} "
        r"=> generated \d+ bytes in \d+ msecs \(HTTP/1\.1 (?P<status>\d+)\) "
        r"request_id=(?P<id>\S+)\n"
    )


def _django_line(app: ServerProcess, request_id: str, what: str) -> re.Match[str]:
    return app.wait_for_log(
        rf"\d{{4}}-\d\d-\d\d [\d:,]+ (?P<level>[A-Z]+) \[\d+\] request_id={re.escape(request_id)} "
        rf"{what}"
    )


def test_a_client_id_is_in_all_three_logs(stack: Stack) -> None:
    ident = f"e2e-{uuid.uuid4()}"
    assert stack.get("/hello?who=client", headers={"X-Request-ID": ident}) == 200
    entry = stack.access_entry("GET /hello?who=client HTTP/1.1")
    assert (entry["id"], entry["status"]) == (ident, 200)
    line = _appserver_line(stack.app, "GET", "/hello?who=client")
    assert (line["id"], line["status"]) == (ident, "200")
    django = _django_line(stack.app, ident, r"sampleapp\.request: GET /hello\?who=client -> 200 ")
    assert django["level"] == "INFO"


def test_an_id_edge_makes_is_in_all_three_logs(stack: Stack) -> None:
    probe = uuid.uuid4().hex[:8]
    assert stack.get(f"/hello?probe={probe}") == 200
    ident = str(stack.access_entry(f"GET /hello?probe={probe} HTTP/1.1")["id"])
    assert re.fullmatch(r"[0-9a-f]{32}", ident), ident
    assert _appserver_line(stack.app, "GET", f"/hello?probe={probe}")["id"] == ident
    _django_line(stack.app, ident, rf"sampleapp\.request: GET /hello\?probe={probe} -> 200 ")


def test_an_insane_client_id_is_replaced_everywhere_alike(stack: Stack) -> None:
    assert stack.get("/hello?who=spaces", headers={"X-Request-ID": "has spaces"}) == 200
    ident = str(stack.access_entry("GET /hello?who=spaces HTTP/1.1")["id"])
    assert re.fullmatch(r"[0-9a-f]{32}", ident), ident
    assert _appserver_line(stack.app, "GET", "/hello?who=spaces")["id"] == ident


def test_an_exception_in_the_body_gets_one_summary_line_and_a_warn_line(stack: Stack) -> None:
    ident = f"e2e-boom-{uuid.uuid4()}"
    assert stack.get("/boom?during=body", headers={"X-Request-ID": ident}) == 500
    raised = _line_of(VIEWS, "deliberate failure in /boom's response body\")")
    summary = stack.app.wait_for_log(r"app exception .*\n(?:.*\n)*?RuntimeError: .*\n")
    first, *traceback = summary.group(0).splitlines()
    assert first == (
        f"app exception request_id={ident} GET /boom?during=body: RuntimeError: "
        f"boom: deliberate failure in /boom's response body (at {VIEWS}:{raised})"
    )
    assert traceback[0] == "Traceback (most recent call last):"
    assert f'File "{VIEWS}", line {raised}, in _failing_body' in summary.group(0)
    # The request line says 500, with the same ID; edge warns with it too.
    line = _appserver_line(stack.app, "GET", "/boom?during=body")
    assert (line["id"], line["status"]) == (ident, "500")
    warn = stack.edge.wait_for_log(r"\[warn\] .*upstream \"app\" peer \S+ answered 500.*")
    assert f"request_id: {ident}" in warn.group(0)
    assert stack.access_entry("GET /boom?during=body HTTP/1.1")["id"] == ident


def test_a_view_exception_is_djangos_error_line_with_the_id(stack: Stack) -> None:
    ident = f"e2e-view-{uuid.uuid4()}"
    assert stack.get("/boom", headers={"X-Request-ID": ident}) == 500
    django = _django_line(stack.app, ident, r"django\.request: Internal Server Error: /boom\n")
    assert django["level"] == "ERROR"
    line = _appserver_line(stack.app, "GET", "/boom")
    assert (line["id"], line["status"]) == (ident, "500")
    warn = stack.edge.wait_for_log(rf"\[warn\] .*answered 500, request_id: {re.escape(ident)}")
    assert warn
    # Django answered this one itself: appserver saw no exception.
    assert f"app exception request_id={ident}" not in stack.app.log()


def test_the_healthcheck_is_drained_from_the_request_log(stack: Stack) -> None:
    """compose.yaml's healthcheck, byte for byte: a uwsgi GET /healthz from 127.0.0.1."""
    host, port = stack.app.address("uwsgi")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            uwsgiproto.encode_packet(
                {
                    "REQUEST_METHOD": "GET",
                    "REQUEST_URI": "/healthz",
                    "PATH_INFO": "/healthz",
                    "QUERY_STRING": "",
                    "SERVER_PROTOCOL": "HTTP/1.0",
                    "SERVER_NAME": "localhost",
                    "SERVER_PORT": "3031",
                    "REMOTE_ADDR": "127.0.0.1",
                }  # fmt: skip
            )
        )
        assert sock.recv(64).split(b" ")[1:2] == [b"200"]
    # Served (Django's own line has its ID)...
    health = stack.app.wait_for_log(
        r"request_id=(\S+) sampleapp\.request: GET /healthz -> 200 "
    ).group(1)
    # ...and the next request's line is out, so the probe's would be too: it is not.
    assert stack.get("/hello?after=health") == 200
    _appserver_line(stack.app, "GET", "/hello?after=health")
    assert "GET /healthz =>" not in stack.app.log()
    assert f"request_id={health}\n" not in stack.app.log()


# -- the JSON encoder and a refused encoder, on the small test app ----------------------------


def test_log_encoder_json_makes_every_server_line_an_object(
    start_appserver: Starter, tmp_path: Path
) -> None:
    server = start_appserver(
        "--http-socket", "127.0.0.1:0", "--wsgi-file", str(WSGI_APP), "--master",
        "--log-encoder", "json", "--log-traceback", "false",
    )  # fmt: skip
    server.wait_ready(1)
    address = server.address("http")
    response = request(address, target="/boom", headers={"X-Request-ID": "json-boom-1"})
    assert response.status == 500
    response = request(address, target="/environ", headers={"X-Request-ID": "json-ok-2"})
    assert response.status == 200
    environ = json.loads(response.body)
    assert environ["REQUEST_ID"] == environ["HTTP_X_REQUEST_ID"] == "json-ok-2"
    made = json.loads(request(address, target="/environ").body)["REQUEST_ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made), made

    def objects() -> list[dict[str, object]] | None:
        found = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        requests = [entry for entry in found if entry.get("request_id") == "json-ok-2"]
        return found if requests else None

    found = wait_until(objects, timeout=15, what="the JSON request line", process=server)
    for line in server.log().splitlines():
        if line.strip():
            assert line.startswith("{"), f"not a JSON line: {line!r}"
    server_lines = [entry for entry in found if entry["type"] == "server"]
    assert any(
        re.fullmatch(r"spawned worker 1 \(pid: \d+, threads: 1\)", str(entry["msg"]))
        for entry in server_lines
    )
    assert any(str(entry["msg"]).startswith("appserver on http-socket") for entry in server_lines)
    [boom] = [entry for entry in found if entry.get("exception")]
    assert boom["level"] == "error" and boom["request_id"] == "json-boom-1"
    assert boom["exception"] == "RuntimeError"
    assert boom["file"] == str(WSGI_APP) and "traceback" not in boom  # log-traceback = false
    [ok] = [e for e in found if e["type"] == "request" and e["request_id"] == "json-ok-2"]
    assert ok["method"] == "GET" and ok["uri"] == "/environ" and ok["status"] == 200
    assert isinstance(ok["duration_ms"], float) and ok["remote_addr"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("log-encoder = gzip", "log-encoder: encoder 'gzip' is not supported"),
        ("log-encoder = json:default {}", "log-encoder: 'json:default': named loggers"),
        ("log-drain = ([a-z", "log-drain: invalid regular expression"),
        ("log-format = %(request_id) %(nope)", "log-format: log-format: unknown variable %(nope)"),
    ],
)
def test_a_bad_log_option_is_one_line_and_exit_1(tmp_path: Path, line: str, message: str) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text(f"[uwsgi]\nsocket = 127.0.0.1:0\nwsgi-file = {WSGI_APP}\n{line}\n")
    done = subprocess.run(
        [sys.executable, "-m", "appserver", "--ini", str(ini)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"appserver: {ini}: {message}"), done.stderr
