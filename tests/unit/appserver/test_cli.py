from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appserver import __version__, options
from appserver.cli import load_config, main, parse_command_line
from appserver.config import AppServerConfig, ConfigError
from appserver.options import Entry
from appserver.pidfile import (
    PidfileError,
    read_pidfile,
    remove_pidfile,
    signal_pidfile,
    write_pidfile,
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "somaxconn"
    path.write_text("65535\n")
    monkeypatch.setattr(options, "SOMAXCONN_PATH", str(path))


def write_ini(tmp_path: Path, body: str, name: str = "uwsgi.ini") -> Path:
    path = tmp_path / name
    path.write_text("[uwsgi]\n" + body)
    return path


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# -- parsing ----------------------------------------------------------------------------------


def test_flags_become_entries_in_order() -> None:
    invocation = parse_command_line(
        ["--socket", ":1", "--processes=4", "-p", "2", "--workers", "3", "--http-socket=:2"]
    )
    assert invocation.entries == [
        Entry("socket", ":1", "--socket"),
        Entry("processes", "4", "--processes"),
        Entry("processes", "2", "-p"),
        Entry("processes", "3", "--workers"),
        Entry("http-socket", ":2", "--http-socket"),
    ]


def test_short_flags() -> None:
    argv = ["-s", ":1", "-p", "2", "-M", "-t", "30", "-w", "m", "-H", "/v", "-b", "8192", "-L",
            "-T", "-d", "log", "-R", "100", "-C", "660", "-l", "64", "-z", "9"]
    keys = [(entry.key, entry.value) for entry in parse_command_line(argv).entries]
    assert keys == [
        ("socket", ":1"), ("processes", "2"), ("master", ""), ("harakiri", "30"),
        ("module", "m"), ("virtualenv", "/v"), ("buffer-size", "8192"), ("disable-logging", ""),
        ("enable-threads", ""), ("daemonize", "log"), ("max-requests", "100"),
        ("chmod-socket", "660"), ("listen", "64"), ("socket-timeout", "9"),
    ]


def test_bare_flags_do_not_swallow_the_next_argument() -> None:
    invocation = parse_command_line(["--master", "uwsgi.ini", "--vacuum", "-C", "--lazy-apps"])
    assert invocation.ini_specs == ["uwsgi.ini"]
    assert [(e.key, e.value) for e in invocation.entries] == [
        ("master", ""), ("vacuum", ""), ("chmod-socket", ""), ("lazy-apps", ""),
    ]


def test_optional_values_are_taken_when_they_are_values() -> None:
    invocation = parse_command_line(["--master", "false", "--vacuum=yes", "--chmod-socket", "600"])
    assert [(e.key, e.value) for e in invocation.entries] == [
        ("master", "false"), ("vacuum", "yes"), ("chmod-socket", "600"),
    ]


def test_ini_files_positional_and_flag() -> None:
    invocation = parse_command_line(["a.ini", "--ini", "b.ini:prod", "c.ini:dev", "--ini=d.ini"])
    assert invocation.ini_specs == ["a.ini", "c.ini:dev", "b.ini:prod", "d.ini"]


def test_control_commands_parse() -> None:
    assert parse_command_line(["--stop", "uwsgi.pid"]).stop == "uwsgi.pid"
    assert parse_command_line(["--reload", "uwsgi.pid"]).reload == "uwsgi.pid"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--proceses", "4"], "--proceses: unknown option 'proceses' (did you mean 'processes'?)"),
        (["--emperor", "/etc/vassals"],
         "--emperor: not supported by appserver "
         "(run one appserver per app under systemd, compose or Kubernetes)"),
        (["--route-uri=^/x$ last:"], "--route-uri: not supported by appserver "
         "(put routing rules in edge)"),
        (["app.py"], "unexpected argument 'app.py' (config files must end in .ini)"),
        (["--processes"], "argument --processes/--workers/-p: expected one argument"),
        (["--stop", "a", "--reload", "b"],
         "argument --reload: not allowed with argument --stop"),
    ],
)
def test_parse_errors_are_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_command_line(argv)
    assert str(info.value) == message


# -- load_config ------------------------------------------------------------------------------


def test_ini_first_then_flags_override_and_add(tmp_path: Path) -> None:
    write_ini(tmp_path, "socket = :3031\nmodule = mysite.wsgi\nprocesses = 4\nmaster = true\n")
    config, warnings = load_config(
        ["uwsgi.ini", "--processes", "8", "--socket", ":3032", "--master=false"], cwd=str(tmp_path)
    )
    assert warnings == []
    assert config.processes == 8
    assert config.sockets == (":3031", ":3032")
    assert config.master is False
    assert config.config_file == str(tmp_path / "uwsgi.ini")
    assert config.argv == ("uwsgi.ini", "--processes", "8", "--socket", ":3032", "--master=false")


def test_flags_alone_build_a_config(tmp_path: Path) -> None:
    config, _ = load_config(["--http-socket", ":0", "-w", "mysite.wsgi", "-M", "-p", "2"],
                            cwd=str(tmp_path))
    assert config == AppServerConfig(
        http_sockets=(":0",), module="mysite.wsgi", master=True, processes=2,
        argv=config.argv,
    )
    assert config.config_file is None


def test_load_config_resolves_against_the_given_cwd(tmp_path: Path) -> None:
    launch = tmp_path / "launch"
    launch.mkdir()
    write_ini(launch, "socket = app.sock\nmodule = m\npidfile = uwsgi.pid\n")
    config, _ = load_config(["uwsgi.ini"], cwd=str(launch))
    assert config.sockets == (str(launch / "app.sock"),)
    assert config.pidfile == str(launch / "uwsgi.pid")


def test_load_config_refuses_control_commands(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(["--stop", "x.pid"], cwd=str(tmp_path))


# -- main -------------------------------------------------------------------------------------


def test_main_hands_the_config_to_the_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import appserver.master

    seen: list[AppServerConfig] = []
    loaders: list[object] = []

    def fake_run(config: AppServerConfig, load_config: object) -> int:
        seen.append(config)
        loaders.append(load_config)
        return 7

    monkeypatch.setattr(appserver.master, "run", fake_run)
    write_ini(tmp_path, "socket = :3031\nmodule = m\nthunder-lock = true\n")
    code, _, err = run_main(["uwsgi.ini"], capsys)
    assert code == 7
    assert seen[0].sockets == (":3031",)
    assert loaders == [load_config]  # what a reload re-reads argv with
    assert err == "appserver: warning: uwsgi.ini: thunder-lock: ignored " \
                  "(workers accept() without a lock)\n"


@pytest.mark.parametrize(
    ("body", "argv", "message"),
    [
        ("socket = :1\nmodule = m\nharakiri = x\n", ["uwsgi.ini"],
         "appserver: uwsgi.ini: harakiri: expected an integer, got 'x'\n"),
        ("socket = :1\nmodule = m\n", ["uwsgi.ini", "--harakiri", "x"],
         "appserver: --harakiri: expected an integer, got 'x'\n"),
        ("module = m\n", ["uwsgi.ini"],
         "appserver: uwsgi.ini: no listener: set socket (for nginx/edge, e.g. "
         "socket = 127.0.0.1:3031), http-socket or http\n"),
        ("socket = :1\nmodule = m\nspooler = /tmp/x\n", ["uwsgi.ini"],
         "appserver: uwsgi.ini: spooler: not supported by appserver "
         "(use a task queue such as Celery or RQ)\n"),
        ("socket = :1\n", ["missing.ini"],
         "appserver: missing.ini: cannot read ini file: No such file or directory\n"),
    ],
)
def test_main_config_errors_are_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, argv: list[str], message: str
) -> None:
    write_ini(tmp_path, body)
    code, out, err = run_main(argv, capsys)
    assert (code, out, err) == (1, "", message)


def test_main_without_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main([], capsys)
    assert code == 1
    assert err.startswith("appserver: nothing to run")
    assert err.count("\n") == 1


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(["--version"], capsys)
    assert (code, out) == (0, f"appserver {__version__}\n")
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0
    # Generated from the table: names, aliases and short flags, with %(var) intact.
    for fragment in ("--socket ADDRESS, --uwsgi-socket ADDRESS, -s ADDRESS", "--workers N",
                     "%(var)", "--stop PIDFILE", "--ini FILE[:SECTION]"):
        assert fragment in out


# -- --stop / --reload against a real process --------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.parametrize(("flag", "signum"), [("--stop", signal.SIGTERM),
                                              ("--reload", signal.SIGHUP)])
def test_control_signals_the_pid_in_the_pidfile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sleeper: subprocess.Popen[bytes],
    flag: str, signum: signal.Signals,
) -> None:
    write_pidfile(str(tmp_path / "uwsgi.pid"), sleeper.pid)
    code, out, err = run_main([flag, "uwsgi.pid"], capsys)
    assert (code, out, err) == (0, "", "")
    assert sleeper.wait(timeout=10) == -signum


def test_control_stale_pidfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    process = subprocess.Popen(["sleep", "60"])
    process.kill()
    process.wait()
    write_pidfile(str(tmp_path / "uwsgi.pid"), process.pid)
    code, _, err = run_main(["--stop", "uwsgi.pid"], capsys)
    assert code == 1
    assert err == (f"appserver: --stop: no process {process.pid} (stale pidfile 'uwsgi.pid'): "
                   "is appserver running?\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "appserver: --reload: cannot read pidfile 'uwsgi.pid': No such file or directory\n"),
        ("", "appserver: --reload: pidfile 'uwsgi.pid' is empty\n"),
        ("  \n", "appserver: --reload: pidfile 'uwsgi.pid' is empty\n"),
        ("abc\n", "appserver: --reload: pidfile 'uwsgi.pid' does not contain a process id: "
                  "'abc'\n"),
        # kill(0) would signal our own process group and kill(-1) everything we may signal.
        ("0\n", "appserver: --reload: pidfile 'uwsgi.pid' does not contain a process id: '0'\n"),
        ("-1\n", "appserver: --reload: pidfile 'uwsgi.pid' does not contain a process id: "
                 "'-1'\n"),
    ],
)
def test_control_bad_pidfiles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / "uwsgi.pid").write_text(content)
    code, out, err = run_main(["--reload", "uwsgi.pid"], capsys)
    assert (code, out, err) == (1, "", message)


# -- pidfile ------------------------------------------------------------------------------------


def test_pidfile_roundtrip_and_remove_only_if_ours(tmp_path: Path) -> None:
    path = str(tmp_path / "app.pid")
    write_pidfile(path)
    assert read_pidfile(path) == os.getpid()
    assert (tmp_path / "app.pid").read_text() == f"{os.getpid()}\n"
    assert remove_pidfile(path, os.getpid() + 1) is False
    assert os.path.exists(path)
    assert remove_pidfile(path) is True
    assert not os.path.exists(path)
    assert remove_pidfile(path) is False


def test_pidfile_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = str(tmp_path / "app.pid")
    write_pidfile(path, 111)
    write_pidfile(path, 222)
    assert read_pidfile(path) == 222
    assert sorted(os.listdir(tmp_path)) == ["app.pid", "somaxconn"]


def test_pidfile_write_failure_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_pidfile(str(tmp_path / "missing" / "app.pid"), 1)


def test_signal_pidfile_returns_the_pid(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = str(tmp_path / "app.pid")
    write_pidfile(path, sleeper.pid)
    assert signal_pidfile(path, signal.SIGTERM) == sleeper.pid
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    with pytest.raises(PidfileError, match="stale pidfile"):
        signal_pidfile(path, signal.SIGTERM)
