from __future__ import annotations

import calendar
import dataclasses
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appserver.config import AppServerConfig
from appserver.log import (
    RequestRecord,
    compile_template,
    format_json,
    format_startup,
    format_uwsgi,
    log_path,
    request_formatter,
)

# Fri Jun 14 15:30:46 2019 UTC, the start of a real uWSGI 2.0.18 request logged as:
REAL_UWSGI_LINE = (
    "[pid: 641|app: 0|req: 1/1] 172.21.0.1 () {38 vars in 1060 bytes} "
    "[Fri Jun 14 15:30:46 2019] GET / => generated 3878 bytes in 381 msecs "
    "(HTTP/1.1 200) 4 headers in 124 bytes (1 switches on core 0)"
)
STARTED = calendar.timegm((2019, 6, 14, 15, 30, 46, 0, 0, 0)) + 0.25


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    """ctime/ltime are local time, as in uWSGI: pin the zone for exact lines."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


def make_record(**changes: object) -> RequestRecord:
    record = RequestRecord(
        pid=641,
        worker_id=1,
        request_number=1,
        total_requests=1,
        remote_addr="172.21.0.1",
        remote_user="",
        vars_count=38,
        vars_bytes=1060,
        started_at=STARTED,
        method="GET",
        uri="/",
        response_bytes=3878,
        msecs=381.9,
        protocol="HTTP/1.1",
        status=200,
        headers_count=4,
        headers_bytes=124,
        core=0,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


# --- uWSGI's default line -------------------------------------------------------------


def test_uwsgi_line_matches_real_uwsgi_output() -> None:
    assert format_uwsgi(make_record()) == REAL_UWSGI_LINE


def test_uwsgi_line_fields() -> None:
    line = format_uwsgi(
        make_record(
            pid=88,
            request_number=1871,
            total_requests=9531,
            remote_user="alice",
            started_at=calendar.timegm((2017, 10, 5, 22, 42, 3, 0, 0, 0)),
            method="POST",
            uri="/update?x=1",
            status=502,
            core=7,
            msecs=0.4,
        )
    )
    assert line.startswith("[pid: 88|app: 0|req: 1871/9531] 172.21.0.1 (alice) ")
    # ctime pads the day with a space, like ctime_r(3).
    assert "[Thu Oct  5 22:42:03 2017] POST /update?x=1 => generated" in line
    assert "in 0 msecs (HTTP/1.1 502)" in line
    assert line.endswith("(1 switches on core 7)")


def test_uwsgi_line_for_static_file() -> None:
    line = format_uwsgi(make_record(app_id=-1, via="sendfile", request_number=5))
    assert line.startswith("[pid: 641|app: -1|req: -1/1] ")
    assert "in 381 msecs via sendfile() (HTTP/1.1 200)" in line


def test_wire_text_cannot_forge_lines() -> None:
    line = format_uwsgi(make_record(uri="/a\r\n[pid: 1|app: 0|req: 1/1] forged", method="G\x00T"))
    assert "\n" not in line and "\r" not in line
    assert "/a\\x0d\\x0a[pid: 1" in line
    assert "] G\\x00T /a" in line


def test_native_utf8_uri_is_shown_as_text() -> None:
    uri = "/caf\u00e9".encode().decode("latin-1")
    assert " GET /caf\u00e9 => " in format_uwsgi(make_record(uri=uri))
    # Latin-1 that is not UTF-8 keeps its printable characters.
    assert " GET /caf\u00e9 => " in format_uwsgi(make_record(uri="/caf\u00e9"))


# --- JSON ---------------------------------------------------------------------------------


def test_json_line() -> None:
    line = format_json(make_record(request_id="4bf92f3577b34da6a3ce929d0e0e4736"))
    assert "\n" not in line
    data = json.loads(line)
    assert list(data) == [
        "time",
        "pid",
        "worker",
        "method",
        "uri",
        "status",
        "bytes",
        "msecs",
        "remote_addr",
        "protocol",
        "core",
        "request_id",
    ]
    assert data == {
        "time": "2019-06-14T15:30:46.250+00:00",
        "pid": 641,
        "worker": 1,
        "method": "GET",
        "uri": "/",
        "status": 200,
        "bytes": 3878,
        "msecs": 381.9,
        "remote_addr": "172.21.0.1",
        "protocol": "HTTP/1.1",
        "core": 0,
        "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }


def test_json_escapes_hostile_text() -> None:
    line = format_json(make_record(uri='/"\n'))
    assert "\n" not in line
    assert json.loads(line)["uri"] == '/"\\x0a'


# --- log-format templates --------------------------------------------------------------


def test_template_reproduces_the_default_line() -> None:
    fmt = (
        "[pid: %(pid)|app: 0|req: -/-] %(addr) (%(user)) {%(vars) vars in %(pktsize) bytes} "
        "[%(ctime)] %(method) %(uri) => generated %(rsize) bytes in %(msecs) msecs "
        "(%(proto) %(status)) %(headers) headers in %(hsize) bytes "
        "(%(switches) switches on core %(core))"
    )
    line = compile_template(fmt)(make_record(remote_user="bob"))
    expected = REAL_UWSGI_LINE.replace("req: 1/1", "req: -/-").replace("()", "(bob)")
    assert line == expected


def test_template_variables() -> None:
    record = make_record(
        worker_id=3,
        host="example.com",
        user_agent="curl/8",
        referer="",
        content_length=12,
        msecs=1500.0,
    )
    render = compile_template(
        "%(wid) %(host) %(uagent) %(referer) %(cl) %(size) %(micros) %(secs) "
        "%(time) %(tmsecs) %(epoch) %(ltime) %(ftime)"
    )
    assert render(record).split(" ", 11) == [
        "3",
        "example.com",
        "curl/8",
        "-",  # empty values print "-", as in uWSGI
        "12",
        str(124 + 3878),
        "1500000",
        "1.500000",
        "1560526246",
        "1560526246250",
        "1560526247",  # epoch is "now" at log time: start + 1.5 s
        "14/Jun/2019:15:30:46 +0000 14/Jun/2019:15:30:46 +0000",
    ]


def test_template_literal_percent_and_text() -> None:
    render = compile_template("100% %(status) (%s) %% done")
    assert render(make_record()) == "100% 200 (%s) %% done"
    assert compile_template("no variables")(make_record()) == "no variables"


def test_template_unknown_variable_names_it() -> None:
    with pytest.raises(ValueError, match=r"unknown variable %\(bogus\)"):
        compile_template("%(method) %(bogus)")
    with pytest.raises(ValueError, match=r"var\.HTTP_X_REAL_IP"):
        compile_template("%(var.HTTP_X_REAL_IP)")


def test_template_unterminated() -> None:
    with pytest.raises(ValueError, match="unterminated"):
        compile_template("%(method")


def test_request_formatter_dispatch() -> None:
    record = make_record()
    assert request_formatter(None) is format_uwsgi
    assert request_formatter("json") is format_json
    assert request_formatter("%(method) %(uri) %(status)")(record) == "GET / 200"
    with pytest.raises(ValueError):
        request_formatter("%(nope)")


# --- startup line -------------------------------------------------------------------------


def test_startup_line_for_the_tutorial_config() -> None:
    config = AppServerConfig(
        sockets=("127.0.0.1:3031",),
        http=(":8000",),
        processes=4,
        threads=50,
    )
    line = format_startup(config, "sampleapp.wsgi:application", mean_latency_ms=500)
    assert "\n" not in line and line.isascii()
    assert line == (
        "appserver on uwsgi 127.0.0.1:3031, http :8000 serving sampleapp.wsgi:application: "
        "4 processes x 50 threads = 200 requests in flight; at a mean latency of 500 ms "
        "that bounds throughput at ~400 requests/s"
    )


def test_startup_line_defaults() -> None:
    line = format_startup(AppServerConfig(http_sockets=("[::1]:9000",)), "app.py")
    assert "on http-socket [::1]:9000 serving app.py:" in line
    assert "1 process x 1 thread = 1 requests in flight" in line
    assert "latency of 100 ms that bounds throughput at ~10 requests/s" in line


def test_startup_line_slow_app_and_no_listener() -> None:
    line = format_startup(AppServerConfig(), "app", mean_latency_ms=3000)
    assert "on no listeners serving app" in line
    assert "~0.333 requests/s" in line
    with pytest.raises(ValueError):
        format_startup(AppServerConfig(), "app", mean_latency_ms=0)


# --- log stream ---------------------------------------------------------------------------
# redirect_output() rewires the process's fds 1 and 2, so it runs in a child process.

_CHILD = """
import os, sys
from appserver.log import emit, redirect_output
path = sys.argv[1]
redirect_output(path)
emit("first line")
print("printed by the app", flush=True)
os.rename(path, path + ".1")  # what logrotate does
emit("still the old file")
redirect_output(path)
emit("caf\\udce9 after reopen")
"""


def test_log_file_is_appended_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text("old line\n")
    old_umask = os.umask(0o022)
    try:
        subprocess.run([sys.executable, "-c", _CHILD, str(path)], check=True, timeout=30)
    finally:
        os.umask(old_umask)
    rotated = (tmp_path / "app.log.1").read_text()
    assert rotated == "old line\nfirst line\nprinted by the app\nstill the old file\n"
    # A lone surrogate is escaped, never an exception.
    assert path.read_text() == "caf\\udce9 after reopen\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_log_path_prefers_logto() -> None:
    assert log_path(AppServerConfig()) is None
    assert log_path(AppServerConfig(daemonize="/tmp/d.log")) == "/tmp/d.log"
    assert log_path(AppServerConfig(daemonize="/tmp/d.log", logto="/tmp/l.log")) == "/tmp/l.log"
