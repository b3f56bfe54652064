"""uWSGI options, each observed from outside the process."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import APPS, WSGI_APP
from tests.support.clients import uwsgi_request
from tests.support.processes import wait_until

LAZY_APP = APPS / "lazy_app.py"


def run_appserver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appserver", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_preloaded_vs_lazy_apps(start_appserver) -> None:
    preloaded = start_appserver(
        "--socket", "127.0.0.1:0", "--wsgi-file", str(LAZY_APP), "--master", name="preloaded"
    )
    lazy = start_appserver(
        "--socket",
        "127.0.0.1:0",
        "--wsgi-file",
        str(LAZY_APP),
        "--master",
        "--lazy-apps",
        name="lazy",
    )
    preloaded.wait_ready(1)
    lazy.wait_ready(1)
    data = json.loads(uwsgi_request(preloaded.address(), "GET", "/").body)
    assert data["imported_in"] == preloaded.pid != data["pid"]
    data = json.loads(uwsgi_request(lazy.address(), "GET", "/").body)
    assert data["imported_in"] == data["pid"] != lazy.pid


def test_mount_splits_script_name(start_appserver) -> None:
    server = start_appserver(
        "--socket",
        "127.0.0.1:0",
        "--mount",
        f"/api={LAZY_APP}",
        "--mount",
        f"/={WSGI_APP}",
        "--master",
    )
    server.wait_ready(1)
    data = json.loads(uwsgi_request(server.address(), "GET", "/api/items/3").body)
    assert (data["script_name"], data["path"]) == ("/api", "/items/3")
    assert json.loads(uwsgi_request(server.address(), "GET", "/echo").body)["script_name"] == ""


def test_static_map_serves_files_and_falls_through(start_appserver, tmp_path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "site.css").write_text("body { color: red }\n")
    (tmp_path / "secret.txt").write_text("never served")
    server = start_appserver(
        "--http-socket",
        "127.0.0.1:0",
        "--wsgi-file",
        str(WSGI_APP),
        "--master",
        "--static-map",
        f"/static={static}",
    )
    server.wait_ready(1)
    import http.client

    connection = http.client.HTTPConnection(*server.address("http"), timeout=10)
    connection.request("GET", "/static/site.css")
    response = connection.getresponse()
    assert response.read() == b"body { color: red }\n"
    assert response.getheader("Content-Type", "").startswith("text/css")
    etag = response.getheader("ETag")
    assert etag and response.getheader("Last-Modified")
    connection.request("GET", "/static/site.css", headers={"If-None-Match": etag})
    response = connection.getresponse()
    assert response.status == 304 and response.read() == b""
    connection.request("GET", "/static/site.css", headers={"Range": "bytes=0-3"})
    response = connection.getresponse()
    assert response.status == 206 and response.read() == b"body"
    connection.request("GET", "/static/../secret.txt")
    response = connection.getresponse()
    assert b"never served" not in response.read()
    connection.request("GET", "/static/missing.css")  # falls through to the app, as in uWSGI
    response = connection.getresponse()
    assert response.status == 404 and response.read() == b"not found\n"
    connection.close()
    server.wait_for_log(r"GET /static/site.css => generated 20 bytes in \d+ msecs via sendfile\(\)")


def test_post_buffering_spools_big_bodies(start_test_app) -> None:
    server = start_test_app(
        "--post-buffering",
        "4096",
    )
    server.wait_ready(1)
    for size in (100, 1_000_000):
        body = os.urandom(size)
        data = json.loads(uwsgi_request(server.address(), "POST", "/echo", body).body)
        assert data["size"] == size


def test_json_log_format_and_logto(start_test_app, tmp_path) -> None:
    log = tmp_path / "requests.log"
    server = start_test_app(
        "--log-format",
        "json",
        "--logto",
        str(log),
    )
    match = server.wait_for_log(r"listening on uwsgi://([\d.]+):(\d+)", path=log)
    address = (match.group(1), int(match.group(2)))
    server.wait_for_log(r"spawned worker", path=log)
    uwsgi_request(address, "GET", "/echo?x=1")
    line = server.wait_for_log(r'(?m)^\{.*"uri".*$', path=log).group(0)
    record = json.loads(line)
    assert record["method"] == "GET" and record["uri"] == "/echo?x=1" and record["status"] == 200


def test_reload_on_rss_recycles_a_fat_worker(start_test_app) -> None:
    server = start_test_app("--reload-on-rss", "1")
    server.wait_ready(1)
    server.wait_for_log(r"uses \d+ MB > reload-on-rss 1 MB: recycling it", timeout=10)
    assert uwsgi_request(server.address(), "GET", "/echo").status == 200


def test_touch_reload(start_test_app, tmp_path) -> None:
    trigger = tmp_path / "reload.trigger"
    trigger.write_text("")
    server = start_test_app(
        "--touch-reload",
        str(trigger),
    )
    server.wait_ready(1)  # the master took the trigger's mtime before it spawned the worker
    # A distinct mtime, whatever the filesystem's timestamp granularity: no need to let time pass.
    before = trigger.stat().st_mtime_ns
    os.utime(trigger, ns=(before + 10**10, before + 10**10))
    server.wait_for_log(r"touch-reload: .* changed; reloading gracefully")
    server.wait_for_log(r"reload: the new workers are ready")
    assert uwsgi_request(server.address(), "GET", "/echo").status == 200


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--socket", ":0", "--wsgi-file", "missing.py"], r"wsgi-file"),
        (
            ["--socket", ":0", "--wsgi-file", str(WSGI_APP), "--harakiri", "soon"],
            r"--harakiri: .*integer",
        ),
        (
            ["--socket", ":0", "--wsgi-file", str(WSGI_APP), "--emperor", "/etc/vassals"],
            r"emperor.*not supported",
        ),
        (
            ["--socket", ":0", "--wsgi-file", str(WSGI_APP), "--no-such-option", "1"],
            r"no-such-option",
        ),
        (["--wsgi-file", str(WSGI_APP)], r"socket"),
    ],
)
def test_bad_options_exit_1_with_one_line(tmp_path, args, expected) -> None:
    import re

    result = run_appserver(*args, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(expected, lines[0]), lines[0]


def test_bad_ini_names_file_and_key(tmp_path) -> None:
    (tmp_path / "app.ini").write_text(
        f"[uwsgi]\nsocket = :0\nwsgi-file = {WSGI_APP}\nprocesses = many\n"
    )
    result = run_appserver("--ini", "app.ini", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("appserver: app.ini: processes:"), result.stderr


def test_import_error_in_the_app_exits_nonzero_with_the_cause(tmp_path) -> None:
    result = run_appserver(
        "--socket",
        "127.0.0.1:0",
        "--wsgi-file",
        str(APPS / "broken_app.py"),
        "--master",
        cwd=tmp_path,
    )
    assert result.returncode == 4
    assert "cannot load the app: wsgi-file" in result.stderr
    assert "No module named 'this_module_does_not_exist'" in result.stderr


def test_unsupported_but_harmless_options_warn(start_test_app, tmp_path) -> None:
    server = start_test_app(
        "--thunder-lock",
        "--plugins",
        "python3",
    )
    server.wait_ready(1)
    log = server.log()
    assert "thunder-lock" in log and "plugins" in log


def test_uwsgitop_reads_the_stats(start_test_app) -> None:
    server = start_test_app(
        "--processes",
        "2",
        "--stats",
        "127.0.0.1:0",
    )
    server.wait_ready(2)
    for _ in range(3):
        uwsgi_request(server.address(), "GET", "/echo")
    match = server.wait_for_log(r"stats server on ([\d.]+:\d+)")
    uwsgitop = Path(sys.executable).parent / "uwsgitop"
    # uwsgitop is a curses program: run it on a pseudo-terminal for one refresh, then quit.
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.execv(sys.executable, [sys.executable, str(uwsgitop), match.group(1)])
    output = _read_pty(fd, until=b"WID", timeout=10)  # the first screen is drawn
    os.write(fd, b"q")
    output += _read_pty(fd, until=None, timeout=10)  # ... then it quits and the pty closes
    _, status = wait_until(
        lambda: _reaped(pid), timeout=10, what="uwsgitop to exit after 'q'", interval=0.01
    )
    text = output.decode(errors="replace")
    assert (
        "WID" in text and "unable to get uWSGI statistics" not in text and "Traceback" not in text
    ), text
    assert os.WEXITSTATUS(status) == 0


def _read_pty(fd: int, until: bytes | None, timeout: float) -> bytes:
    """Read a pseudo-terminal until ``until`` shows up, or (``None``) until the child closes it."""
    output = b""
    deadline = time.monotonic() + timeout
    while until is None or until not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {until!r} on the pty; read: {output!r}")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child's side of the pty is closed
            chunk = b""
        if not chunk:
            if until is None:
                return output
            raise AssertionError(f"the pty closed before {until!r}; read: {output!r}")
        output += chunk
    return output


def _reaped(pid: int) -> tuple[int, int] | None:
    """(pid, wait status) once the child has exited, else None."""
    reaped = os.waitpid(pid, os.WNOHANG)
    return reaped if reaped[0] else None
