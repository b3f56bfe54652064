from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from appserver import options
from appserver.config import AppServerConfig, ConfigError
from appserver.options import (
    IGNORED,
    OPTIONS,
    UNSUPPORTED,
    Entry,
    build_config,
    config_fields,
    find_option,
    unsupported_reason,
)

# The smallest config that validates: one listener, one application.
BASE = [Entry("socket", "127.0.0.1:3031", "uwsgi.ini"), Entry("module", "mysite.wsgi", "uwsgi.ini")]


@pytest.fixture(autouse=True)
def _big_somaxconn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests must not depend on the host's net.core.somaxconn.
    path = tmp_path / "somaxconn"
    path.write_text("65535\n")
    monkeypatch.setattr(options, "SOMAXCONN_PATH", str(path))


def build(
    tmp_path: Path, *pairs: tuple[str, str | None], base: bool = True
) -> tuple[AppServerConfig, list[str]]:
    warnings: list[str] = []
    entries = [*(BASE if base else []), *(Entry(k, v, "uwsgi.ini") for k, v in pairs)]
    config = build_config(entries, cwd=str(tmp_path), warnings=warnings)
    return config, warnings


def error(tmp_path: Path, *pairs: tuple[str, str | None], base: bool = True) -> str:
    with pytest.raises(ConfigError) as info:
        build(tmp_path, *pairs, base=base)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the table --------------------------------------------------------------------------------


def test_table_covers_every_config_field_once() -> None:
    covered = [option.field for option in OPTIONS]
    assert len(covered) == len(set(covered))
    assert set(covered) == config_fields()


def test_table_defaults_match_the_dataclass() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(AppServerConfig)}
    for option in OPTIONS:
        assert option.default == defaults[option.field], option.name


def test_spellings_are_unique_and_disjoint_from_ignored_and_unsupported() -> None:
    spellings = [s for option in OPTIONS for s in (option.name, *option.aliases)]
    shorts = [option.short for option in OPTIONS if option.short]
    assert len(spellings) == len(set(spellings))
    assert len(shorts) == len(set(shorts))
    assert not set(spellings) & set(IGNORED)
    for spelling in spellings:
        assert unsupported_reason(spelling) is None, spelling
    for name in IGNORED:
        assert unsupported_reason(name) is None, name


def test_uwsgi_short_flags() -> None:
    expected = {
        "s": "socket", "p": "processes", "M": "master", "t": "harakiri", "w": "module",
        "H": "virtualenv", "b": "buffer-size", "L": "disable-logging", "T": "enable-threads",
        "d": "daemonize", "R": "max-requests", "C": "chmod-socket", "l": "listen",
        "z": "socket-timeout",
    }
    assert {o.short: o.name for o in OPTIONS if o.short} == expected


def test_aliases_and_underscores_find_the_option() -> None:
    for spelling, name in [("workers", "processes"), ("wsgi", "module"), ("file", "wsgi-file"),
                           ("venv", "virtualenv"), ("home", "virtualenv"), ("pyhome", "virtualenv"),
                           ("lazy", "lazy-apps"), ("wsgi_file", "wsgi-file")]:
        found = find_option(spelling)
        assert found is not None and found.name == name


# -- defaults and the minimal config ------------------------------------------------------------


def test_minimal_config_has_the_dataclass_defaults(tmp_path: Path) -> None:
    config, warnings = build(tmp_path)
    assert warnings == []
    assert config == AppServerConfig(sockets=("127.0.0.1:3031",), module="mysite.wsgi")


def test_argv_and_config_file_are_recorded(tmp_path: Path) -> None:
    config = build_config(BASE, cwd=str(tmp_path), argv=["x.ini"], config_file="/a/x.ini")
    assert config.argv == ("x.ini",)
    assert config.config_file == "/a/x.ini"


# -- value types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("True", True), ("1", True), ("yes", True), ("on", True), ("y", True),
     ("false", False), ("FALSE", False), ("0", False), ("no", False), ("off", False),
     ("n", False), (None, True), ("", True)],
)
def test_booleans(tmp_path: Path, raw: str | None, expected: bool) -> None:
    config, _ = build(tmp_path, ("master", raw))
    assert config.master is expected


def test_bad_boolean(tmp_path: Path) -> None:
    message = error(tmp_path, ("master", "maybe"))
    assert message.startswith("uwsgi.ini: master: expected a boolean")
    assert "'maybe'" in message


def test_integers(tmp_path: Path) -> None:
    config, _ = build(tmp_path, ("processes", "4"), ("threads", "50"), ("harakiri", "30"),
                      ("max-requests", "0"), ("max-requests-delta", "7"), ("listen", "128"))
    assert (config.processes, config.threads, config.harakiri) == (4, 50, 30)
    assert (config.max_requests, config.max_requests_delta, config.listen) == (0, 7, 128)


@pytest.mark.parametrize("raw", ["x", "-1", "1.5", "1_000", "٣", ""])
def test_bad_integer(tmp_path: Path, raw: str) -> None:
    message = error(tmp_path, ("harakiri", raw))
    assert message.startswith("uwsgi.ini: harakiri: expected")


def test_harakiri_error_text_is_the_documented_one(tmp_path: Path) -> None:
    assert error(tmp_path, ("harakiri", "x")) == "uwsgi.ini: harakiri: expected an integer, got 'x'"


@pytest.mark.parametrize("key", ["processes", "threads", "listen", "buffer-size"])
def test_counts_must_be_positive(tmp_path: Path, key: str) -> None:
    assert error(tmp_path, (key, "0")) == f"uwsgi.ini: {key}: must be at least 1, got 0"


def test_inline_comment_gets_a_hint(tmp_path: Path) -> None:
    message = error(tmp_path, ("processes", "4  # one per core"))
    assert "no inline comments" in message


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 0o666), ("", 0o666), ("660", 0o660), ("0664", 0o664),
                          ("0o600", 0o600)]
)
def test_chmod_socket(tmp_path: Path, raw: str | None, expected: int) -> None:
    config, _ = build(tmp_path, ("chmod-socket", raw))
    assert config.chmod_socket == expected


@pytest.mark.parametrize("raw", ["rw", "999", "u+rw"])
def test_bad_chmod_socket(tmp_path: Path, raw: str) -> None:
    assert "expected an octal file mode" in error(tmp_path, ("chmod-socket", raw))


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 5), ("true", 5), ("off", 0), ("0", 0), ("15", 15)]
)
def test_http_keepalive(tmp_path: Path, raw: str | None, expected: int) -> None:
    config, _ = build(tmp_path, ("http-keepalive", raw))
    assert config.http_keepalive == expected


def test_env_pairs_accumulate_and_keep_equals_in_values(tmp_path: Path) -> None:
    config, _ = build(tmp_path, ("env", "DJANGO_SETTINGS_MODULE=mysite.settings"),
                      ("env", "DSN=a=b"), ("env", "EMPTY="))
    assert config.env == (("DJANGO_SETTINGS_MODULE", "mysite.settings"), ("DSN", "a=b"),
                          ("EMPTY", ""))


@pytest.mark.parametrize("raw", ["NOEQUALS", "=value"])
def test_bad_env(tmp_path: Path, raw: str) -> None:
    assert error(tmp_path, ("env", raw)).startswith("uwsgi.ini: env: expected KEY=VALUE")


def test_value_required(tmp_path: Path) -> None:
    assert error(tmp_path, ("pidfile", None)) == "uwsgi.ini: pidfile: expected a value"
    assert error(tmp_path, ("pidfile", "")) == "uwsgi.ini: pidfile: expected a value"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("mysite.wsgi", "mysite.wsgi"), ("mysite.wsgi:application", "mysite.wsgi:application")],
)
def test_module(tmp_path: Path, raw: str, expected: str) -> None:
    config, _ = build(tmp_path, ("socket", ":1"), ("module", raw), base=False)
    assert config.module == expected


def test_module_that_is_a_path_hints_at_wsgi_file(tmp_path: Path) -> None:
    message = error(tmp_path, ("socket", ":1"), ("module", "P8/wsgi.py"), base=False)
    assert message.startswith("uwsgi.ini: module: expected a module")
    assert "wsgi-file" in message


def test_uid_and_gid(tmp_path: Path) -> None:
    config, _ = build(tmp_path, ("uid", "root"), ("gid", "0"))
    assert (config.uid, config.gid) == ("root", "0")
    assert error(tmp_path, ("uid", "no-such-user-xyz")) == (
        "uwsgi.ini: uid: no such user 'no-such-user-xyz'"
    )
    assert error(tmp_path, ("gid", "no-such-group-xyz")) == (
        "uwsgi.ini: gid: no such group 'no-such-group-xyz'"
    )


# -- listener addresses ----------------------------------------------------------------------------


def test_addresses(tmp_path: Path) -> None:
    config, _ = build(tmp_path, ("socket", ":3032"), ("socket", "[::1]:3033"),
                      ("socket", "app.sock"), ("http-socket", "0.0.0.0:8000"),
                      ("http", "@abstract"), ("stats", "127.0.0.1:9191"))
    assert config.sockets == ("127.0.0.1:3031", ":3032", "[::1]:3033",
                              str(tmp_path / "app.sock"))
    assert config.http_sockets == ("0.0.0.0:8000",)
    assert config.http == ("@abstract",)
    assert config.stats == "127.0.0.1:9191"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [("127.0.0.1:http", "expected a port number"), (":70000", "expected a port number"),
     ("::1:3031", "IPv6 addresses need brackets"), ("=0", "shared-socket")],
)
def test_bad_addresses(tmp_path: Path, raw: str, fragment: str) -> None:
    message = error(tmp_path, ("socket", raw))
    assert message.startswith("uwsgi.ini: socket: ")
    assert fragment in message


def test_no_listener(tmp_path: Path) -> None:
    message = error(tmp_path, ("module", "mysite.wsgi"), base=False)
    assert message.startswith("uwsgi.ini: no listener: set socket")


# -- multi and single options ---------------------------------------------------------------------


def test_multi_options_accumulate_in_order_and_singles_take_the_last(tmp_path: Path) -> None:
    config, _ = build(tmp_path, ("socket", ":2"), ("processes", "2"), ("workers", "3"),
                      ("pythonpath", "a"), ("pythonpath", "b"))
    assert config.sockets == ("127.0.0.1:3031", ":2")
    assert config.processes == 3
    assert config.pythonpath == (str(tmp_path / "a"), str(tmp_path / "b"))


# -- ignored, unsupported, unknown ---------------------------------------------------------------


def test_ignored_options_warn_once_per_occurrence(tmp_path: Path) -> None:
    config, warnings = build(tmp_path, ("plugins", "python3"), ("thunder-lock", None),
                             ("single_interpreter", "true"))
    assert config == AppServerConfig(sockets=("127.0.0.1:3031",), module="mysite.wsgi")
    assert warnings == [
        "uwsgi.ini: plugins: ignored (Python support is built in)",
        "uwsgi.ini: thunder-lock: ignored (workers accept() without a lock)",
        "uwsgi.ini: single-interpreter: ignored (each worker runs one interpreter)",
    ]


@pytest.mark.parametrize("key", ["emperor", "spooler", "mule", "cron", "route-uri", "cache2",
                                 "fastrouter", "offload-threads", "gevent", "async", "ugreen",
                                 "https", "ssl-verify-depth", "attach-daemon"])
def test_unsupported_options(tmp_path: Path, key: str) -> None:
    message = error(tmp_path, (key, "x"))
    assert message.startswith(f"uwsgi.ini: {key}: not supported by appserver (")


def test_every_unsupported_entry_has_a_reason() -> None:
    assert all(reason.strip() for reason in UNSUPPORTED.values())
    assert all(ignored.reason.strip() for ignored in IGNORED.values())


def test_unknown_option_suggests_the_closest(tmp_path: Path) -> None:
    assert error(tmp_path, ("proceses", "4")) == (
        "uwsgi.ini: unknown option 'proceses' (did you mean 'processes'?)"
    )
    assert error(tmp_path, ("zzzz", "4")) == "uwsgi.ini: unknown option 'zzzz'"


def test_flag_sources_name_the_flag_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--workers: expected an integer, got 'x'$"):
        build_config([*BASE, Entry("processes", "x", "--workers")], cwd=str(tmp_path))


# -- applications ---------------------------------------------------------------------------------


def test_no_application(tmp_path: Path) -> None:
    message = error(tmp_path, ("socket", ":1"), base=False)
    assert message.startswith("uwsgi.ini: no application: set module")


def test_two_applications(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    message = error(tmp_path, ("wsgi-file", "app.py"))
    assert message == (
        "uwsgi.ini: module and uwsgi.ini: wsgi-file: set exactly one of module, wsgi-file or mount"
    )


def test_wsgi_file_is_relative_to_chdir(tmp_path: Path) -> None:
    (tmp_path / "P8" / "P8").mkdir(parents=True)
    (tmp_path / "P8" / "P8" / "wsgi.py").write_text("")
    config, _ = build(tmp_path, ("socket", ":1"), ("chdir", "P8"), ("wsgi-file", "P8/wsgi.py"),
                      base=False)
    assert config.chdir == str(tmp_path / "P8")
    assert config.wsgi_file == str(tmp_path / "P8" / "P8" / "wsgi.py")


def test_missing_wsgi_file_names_key_and_chdir(tmp_path: Path) -> None:
    message = error(tmp_path, ("socket", ":1"), ("chdir", "."), ("wsgi-file", "nope.py"),
                    base=False)
    assert message.startswith(f"uwsgi.ini: wsgi-file: file '{tmp_path / 'nope.py'}' does not exist")
    assert "resolved against chdir" in message


def test_missing_directories(tmp_path: Path) -> None:
    assert error(tmp_path, ("chdir", "/no/such/dir")) == (
        "uwsgi.ini: chdir: directory '/no/such/dir' does not exist"
    )
    assert error(tmp_path, ("home", "venv")) == (
        f"uwsgi.ini: home: directory '{tmp_path / 'venv'}' does not exist"
    )


def test_mounts(tmp_path: Path) -> None:
    (tmp_path / "blog.py").write_text("")
    config, _ = build(tmp_path, ("socket", ":1"), ("mount", "/blog=blog.py"),
                      ("mount", "/shop=shop.wsgi:app"), base=False)
    assert config.mounts == (("/blog", str(tmp_path / "blog.py")), ("/shop", "shop.wsgi:app"))
    assert error(tmp_path, ("socket", ":1"), ("mount", "/x=missing.py"), base=False).startswith(
        "uwsgi.ini: mount: /x: file"
    )
    assert "expected /PREFIX=APP" in error(tmp_path, ("socket", ":1"), ("mount", "blog=b.py"),
                                          base=False)


# -- paths ----------------------------------------------------------------------------------------


def test_server_files_are_relative_to_the_launch_directory(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    config, _ = build(tmp_path, ("chdir", "app"), ("pidfile", "uwsgi.pid"),
                      ("daemonize", "uwsgi.log"), ("logto", "./log.txt"),
                      ("socket", "run/../app.sock"), ("stats", "stats.sock"))
    assert config.pidfile == str(tmp_path / "uwsgi.pid")
    assert config.daemonize == str(tmp_path / "uwsgi.log")
    assert config.logto == str(tmp_path / "log.txt")
    assert config.sockets[-1] == str(tmp_path / "app.sock")
    assert config.stats == str(tmp_path / "stats.sock")


def test_app_files_are_relative_to_chdir(tmp_path: Path) -> None:
    (tmp_path / "app" / "static").mkdir(parents=True)
    config, warnings = build(tmp_path, ("chdir", "app"), ("static-map", "/static=static"),
                             ("pythonpath", "."), ("touch-reload", "reload.txt"))
    assert warnings == []
    assert config.static_maps == (("/static", str(tmp_path / "app" / "static")),)
    assert config.pythonpath == (str(tmp_path / "app"),)
    assert config.touch_reload == (str(tmp_path / "app" / "reload.txt"),)


def test_missing_static_dir_is_a_warning(tmp_path: Path) -> None:
    config, warnings = build(tmp_path, ("static-map", "/static=collected"))
    assert config.static_maps == (("/static", str(tmp_path / "collected")),)
    assert len(warnings) == 1
    assert warnings[0].startswith("uwsgi.ini: static-map: /static: directory")


def test_bad_static_map(tmp_path: Path) -> None:
    assert error(tmp_path, ("static-map", "static=/srv")) == (
        "uwsgi.ini: static-map: expected /PREFIX=DIR, got 'static=/srv'"
    )


def test_pidfile_directory_must_exist(tmp_path: Path) -> None:
    assert error(tmp_path, ("pidfile", "run/uwsgi.pid")) == (
        f"uwsgi.ini: pidfile: directory of '{tmp_path / 'run' / 'uwsgi.pid'}' does not exist"
    )


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    config, _ = build(tmp_path, ("pidfile", str(tmp_path / "x.pid")))
    assert config.pidfile == str(tmp_path / "x.pid")
    assert os.path.isabs(config.pidfile)


# -- somaxconn -------------------------------------------------------------------------------------


def test_listen_above_somaxconn_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "small"
    path.write_text("128\n")
    monkeypatch.setattr(options, "SOMAXCONN_PATH", str(path))
    config, warnings = build(tmp_path, ("listen", "4096"))
    assert config.listen == 4096
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "uwsgi.ini: listen: backlog 4096 exceeds net.core.somaxconn (128)"
    )
    assert "sysctl -w net.core.somaxconn=4096" in warnings[0]
    _, quiet = build(tmp_path, ("listen", "100"))
    assert quiet == []


def test_unreadable_somaxconn_is_no_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(options, "SOMAXCONN_PATH", str(tmp_path / "absent"))
    _, warnings = build(tmp_path, ("listen", "1000000"))
    assert warnings == []


# -- metrics-http ---------------------------------------------------------------------------


def test_metrics_http_is_off_by_default_and_takes_a_tcp_address(tmp_path: Path) -> None:
    assert build(tmp_path)[0].metrics_http is None
    assert build(tmp_path, ("metrics-http", ":9192"))[0].metrics_http == ":9192"
    assert build(tmp_path, ("metrics-http", "[::1]:9192"))[0].metrics_http == "[::1]:9192"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("/run/metrics.sock", "expected [host]:port such as 10.0.0.5:9192 or :9192"),
        ("@metrics", "expected [host]:port"),
        (":99999", "expected a port number 0-65535"),
        ("", "expected [host]:port"),
    ],
)
def test_metrics_http_refuses_what_prometheus_cannot_scrape(
    tmp_path: Path, value: str, problem: str
) -> None:
    message = error(tmp_path, ("metrics-http", value))
    assert message.startswith("uwsgi.ini: metrics-http: ") and problem in message, message


def test_metrics_http_may_not_share_an_address(tmp_path: Path) -> None:
    socket = next(entry.value for entry in BASE if entry.key == "socket")
    message = error(tmp_path, ("metrics-http", socket))
    assert message == f"uwsgi.ini: metrics-http: {socket} is also a socket address: use another port"
    message = error(tmp_path, ("stats", "127.0.0.1:9191"), ("metrics-http", "127.0.0.1:9191"))
    assert message.endswith("127.0.0.1:9191 is also the stats address: use another port")
