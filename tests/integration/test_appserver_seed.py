"""The seed tutorial's uwsgi.ini, as written (paths adjusted), runs the Django sample.

It daemonizes, writes uwsgi.pid and uwsgi.log next to the ini (where the
tutorial's ``uwsgi --stop uwsgi.pid`` and ``tail -f uwsgi.log`` expect them),
serves Django behind nginx with the tutorial's two locations, and stops with
``appserver --stop uwsgi.pid``.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.nginx import Nginx, nginx_available
from tests.support.processes import REPO

SAMPLEAPP = REPO / "sampleapp"

# The tutorial's file, byte for byte but for the paths (and the port: 0 picks a free one).
SEED_INI = """[uwsgi]
# 使用Nginx连接时使用,Django程序所在服务器地址和端口号p
socket=127.0.0.1:0
#http=172.16.240.177:8000
# 项目目录绝对路径
chdir={chdir}
# 项目中wsgi.py文件的目录,相对于项目目录
wsgi-file=sampleapp/wsgi.py
# 进程数(机器核数的1倍)
processes=4
# 线程数
threads=50
# uwsgi服务器的角色
master=True
# 存放进程编号的文件
pidfile=uwsgi.pid
# 日志文件
daemonize=uwsgi.log
# 指定依赖的虚拟环境
virtualenv={venv}
"""


def _read_address(log: Path) -> tuple[str, int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        match = re.search(r"listening on uwsgi://([\d.]+):(\d+)", text)
        if match and text.count("spawned worker") >= 4:
            return match.group(1), int(match.group(2))
        time.sleep(0.1)
    raise AssertionError(f"the daemon did not start; uwsgi.log:\n{text}")


def test_seed_uwsgi_ini_runs_django_behind_nginx_and_stops(
    tmp_path: Path, django_env: dict[str, str]
) -> None:
    if not nginx_available():
        pytest.fail("nginx is not installed; .ci/run installs it", pytrace=False)
    conf = tmp_path / "uwsgi_conf"
    conf.mkdir()
    venv = Path(sys.prefix)
    (conf / "uwsgi.ini").write_text(SEED_INI.format(chdir=SAMPLEAPP, venv=venv), encoding="utf-8")

    # "uwsgi --ini uwsgi.ini" in the tutorial; daemonize returns to the shell at once.
    started = subprocess.run(
        [sys.executable, "-m", "appserver", "--ini", "uwsgi.ini"],
        cwd=conf,
        env=django_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    pidfile = conf / "uwsgi.pid"
    log = conf / "uwsgi.log"
    host, port = _read_address(log)
    master_pid = int(pidfile.read_text().strip())
    os.kill(master_pid, 0)  # alive

    text = log.read_text()
    assert "4 processes x 50 threads = 200 requests in flight" in text

    nginx = Nginx(
        tmp_path / "nginx",
        f"""
        location /static {{
            alias {django_env["STATIC_ROOT"]};
        }}
        location / {{
            include PARAMS;
            uwsgi_pass {host}:{port};
            uwsgi_ignore_client_abort on;
        }}
        """,
    ).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
        connection.request("GET", "/", headers={"Host": "localhost"})
        response = connection.getresponse()
        page = response.read().decode()
        assert response.status == 200, page
        assert response.getheader("X-Served-By")
        static_paths = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
        assert static_paths, page
        for path in static_paths:
            connection.request("GET", path, headers={"Host": "localhost"})
            static = connection.getresponse()
            static.read()
            assert static.status == 200, path
        connection.request("GET", "/api/items", headers={"Host": "localhost"})
        items = connection.getresponse()
        assert items.status == 200
        assert b"[" in items.read()
        connection.close()
    finally:
        nginx.stop()

    # "uwsgi --stop uwsgi.pid"
    stopped = subprocess.run(
        [sys.executable, "-m", "appserver", "--stop", "uwsgi.pid"],
        cwd=conf,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(master_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the master did not stop; log:\n{log.read_text()}")
    assert not pidfile.exists()
    assert "graceful stop" in log.read_text()
