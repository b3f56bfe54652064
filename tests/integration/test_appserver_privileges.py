"""uid / gid, for real: appserver started as root gives up root before it loads the app.

The checks read what the kernel says (/proc/PID/status) about the master and
every worker, then make requests, reload, and try the ways a drop can fail.
The server runs under an interpreter the dropped user may execute: the test
venv's interpreter can live in root's home (pyenv), which ``nobody`` cannot
enter, and a real deployment's Python is readable by everyone.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import WSGI_APP
from tests.support.clients import uwsgi_request
from tests.support.processes import REPO, ServerProcess

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid).gr_name


def _as_nobody() -> dict[str, object]:
    return {"user": NOBODY.pw_uid, "group": NOBODY.pw_gid, "extra_groups": []}


@pytest.fixture(scope="module")
def runtime() -> tuple[str, dict[str, str]]:
    """(interpreter, environment) with which ``nobody`` can import appserver."""
    assert os.geteuid() == 0, "the privilege tests need root (as CI and the sandbox run)"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]]),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    tried = []
    for candidate in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import appserver.master, httptools, uwsgiproto"],
                env=env,
                cwd="/",
                capture_output=True,
                timeout=60,
                **_as_nobody(),  # type: ignore[arg-type]
            )
        except OSError as exc:  # not even executable by nobody
            tried.append(f"{candidate}: {exc}")
            continue
        if probe.returncode == 0:
            return candidate, env
        tried.append(f"{candidate}: {probe.stderr.decode(errors='replace').strip()[-200:]}")
    pytest.fail("no interpreter the user nobody can run appserver with:\n" + "\n".join(tried))


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory everyone may enter (pytest's tmp_path is root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="appserver-privileges-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def start(
    runtime: tuple[str, dict[str, str]], workdir: Path
) -> Iterator[Callable[..., ServerProcess]]:
    python, env = runtime
    started: list[ServerProcess] = []

    def start_server(*args: str) -> ServerProcess:
        server = ServerProcess(
            [python, "-m", "appserver", "--wsgi-file", str(WSGI_APP), "--master", *args],
            cwd=workdir,
            log_path=workdir / f"appserver-{len(started)}.log",
            env=env,
        ).start()
        started.append(server)
        return server

    yield start_server
    for server in started:
        server.stop()


def _ids(pid: int) -> dict[str, list[int]]:
    """Uid, Gid (real, effective, saved, filesystem) and Groups of a process, from the kernel."""
    fields: dict[str, list[int]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(item) for item in value.split()]
    return fields


def _worker_pids(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"spawned worker \d+ \(pid: (\d+)", server.log())]


# initgroups("nobody", gid): the primary group and nobody's own memberships, none of root's.
NOBODY_GROUPS = sorted({g.gr_gid for g in grp.getgrall() if "nobody" in g.gr_mem} | {NOBODY.pw_gid})


def _unprivileged(pid: int) -> None:
    assert _ids(pid) == {
        "Uid": [NOBODY.pw_uid] * 4,
        "Gid": [NOBODY.pw_gid] * 4,
        "Groups": NOBODY_GROUPS,
    }, f"process {pid} is not nobody:{NOGROUP} only"


def test_master_and_workers_run_as_uid_and_gid(start: Callable[..., ServerProcess]) -> None:
    server = start(
        "--socket", "127.0.0.1:0", "--processes", "2", "--uid", "nobody", "--gid", NOGROUP
    )
    server.wait_ready(2)
    address = server.address()
    server.wait_for_log(
        rf"dropped privileges: now uid {NOBODY.pw_uid} \(nobody\), gid {NOBODY.pw_gid} "
        rf"\({NOGROUP}\), no supplementary groups"
    )
    _unprivileged(server.pid)
    workers = _worker_pids(server)
    assert len(workers) == 2
    for worker in workers:
        _unprivileged(worker)
    answered = {json.loads(uwsgi_request(address, "GET", "/pid").body)["pid"] for _ in range(10)}
    assert answered <= set(workers)
    # The drop happens before the app is imported: no line of it ran as root.
    log = server.log()
    assert log.index("dropped privileges") < log.index("spawned worker")


def test_a_unix_socket_belongs_to_the_dropped_user(
    start: Callable[..., ServerProcess], workdir: Path, runtime: tuple[str, dict[str, str]]
) -> None:
    path = workdir / "app.sock"
    server = start("--socket", str(path), "--chmod-socket", "660", "--uid", "nobody")
    server.wait_ready(1)
    server.wait_for_log(rf"listening on uwsgi://unix:{re.escape(str(path))}")
    status = path.stat()
    assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (
        NOBODY.pw_uid,
        NOBODY.pw_gid,
        0o660,
    )
    # A client running as that user (nginx with the same user, say) may connect.
    python, env = runtime
    client = subprocess.run(
        [
            python,
            "-c",
            "import sys; from tests.support.clients import uwsgi_request; "
            "print(uwsgi_request(sys.argv[1], 'GET', '/echo').status)",
            str(path),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        **_as_nobody(),  # type: ignore[arg-type]
    )
    assert client.stdout.decode().strip() == "200", client.stderr.decode()


def test_a_reload_keeps_the_dropped_ids(start: Callable[..., ServerProcess], workdir: Path) -> None:
    pidfile = workdir / "app.pid"
    server = start(
        "--socket", "127.0.0.1:0", "--uid", "nobody", "--gid", NOGROUP, "--pidfile", str(pidfile)
    )
    server.wait_ready(1)
    address = server.address()
    first = _worker_pids(server)
    assert int(pidfile.read_text()) == server.pid  # written as root, before the drop
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"reload: the new workers are ready")
    server.wait_for_log(r"old worker \(pid: \d+\) exited with status 0")
    new = [pid for pid in _worker_pids(server) if pid not in first]
    assert new
    _unprivileged(server.pid)  # the re-executed master
    for worker in new:
        _unprivileged(worker)
    assert uwsgi_request(address, "GET", "/echo").status == 200
    assert int(pidfile.read_text()) == server.pid
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    # The unprivileged master may not unlink root's pidfile in root's directory; it says so.
    assert f"cannot remove the pidfile {pidfile}: Permission denied" in server.log()


def test_an_unknown_user_is_one_config_error(
    runtime: tuple[str, dict[str, str]], workdir: Path
) -> None:
    python, env = runtime
    (workdir / "uwsgi.ini").write_text(
        f"[uwsgi]\nsocket = 127.0.0.1:0\nwsgi-file = {WSGI_APP}\nuid = no-such-user-x\n"
    )
    for argv, expected in (
        (["uwsgi.ini"], "appserver: uwsgi.ini: uid: no such user 'no-such-user-x'\n"),
        (
            ["--socket", ":0", "--wsgi-file", str(WSGI_APP), "--gid", "no-such-group-x"],
            "appserver: --gid: no such group 'no-such-group-x'\n",
        ),
    ):
        result = subprocess.run(
            [python, "-m", "appserver", *argv],
            cwd=workdir,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert (result.returncode, result.stderr.decode()) == (1, expected)


def test_a_drop_that_cannot_happen_stops_the_server(
    runtime: tuple[str, dict[str, str]], workdir: Path
) -> None:
    """Started without root, ``uid = root`` cannot be honoured: refuse, never serve."""
    python, env = runtime
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [python, "-m", "appserver", "--socket", f"127.0.0.1:{port}", "--wsgi-file", str(WSGI_APP)]
        + ["--uid", "root", "--gid", "root"],
        cwd=workdir,
        env=env,
        capture_output=True,
        timeout=60,
        **_as_nobody(),  # type: ignore[arg-type]
    )
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"appserver: cannot setgid() to 0 as a non-root user "
        f"(running as uid {NOBODY.pw_uid}, gid {NOBODY.pw_gid})\n"
    )
    assert result.stdout == b""
