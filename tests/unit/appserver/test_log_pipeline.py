"""Request IDs, the app-exception summary line, log-drain and the log encoders (issue 11)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from appserver import log
from appserver.config import AppServerConfig, ConfigError
from appserver.environ import RequestIds, sane_request_id
from appserver.ini import read_ini
from appserver.log import (
    RequestRecord,
    compile_encoders,
    compile_template,
    configure,
    emit,
    emit_app_exception,
    emit_request,
    format_app_exception,
    parse_encoder,
    raised_at,
    request_formatter,
)
from appserver.options import Entry, build_config

HEX32 = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def _plain_pipeline() -> Iterator[None]:
    configure(AppServerConfig())
    yield
    configure(AppServerConfig())


def record(**changes: object) -> RequestRecord:
    base = RequestRecord(
        pid=641, worker_id=2, request_number=1, total_requests=1, remote_addr="10.0.0.9",
        remote_user="", vars_count=12, vars_bytes=300, started_at=1_700_000_000.5,
        method="GET", uri="/api/items?x=1", response_bytes=512, msecs=3.25,
        protocol="HTTP/1.1", status=200, headers_count=4, headers_bytes=120, core=1,
        host="shop.example", user_agent="curl/8.5", referer="", content_length=0,
        request_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# -- request IDs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sane"),
    [
        ("e2e-1b4e28ba-2fa1-11d2-883f-0016d3cca427", True),
        ("x", True),
        ("!" * 128, True),
        ("~{}[]<>\"'\\|", True),  # visible ASCII, odd as it is
        ("", False),
        ("!" * 129, False),
        ("a b", False),
        ("tab\there", False),
        ("line\nbreak", False),
        ("nul\x00", False),
        ("del\x7f", False),
        ("caf\u00e9", False),  # non-ASCII (a latin-1 byte from the wire)
        ("\u00e2\u0080\u0094", False),  # UTF-8 bytes as PEP 3333 latin-1 text
    ],
)
def test_sane_request_ids_are_1_to_128_visible_ascii(value: str, sane: bool) -> None:
    assert sane_request_id(value) is sane
    ids = RequestIds()
    chosen = ids.for_environ({"HTTP_X_REQUEST_ID": value})
    if sane:
        assert chosen == value
    else:
        assert HEX32.fullmatch(chosen), chosen


def test_new_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    ids = RequestIds()
    made = [ids.for_environ({}) for _ in range(1000)]  # several os.urandom batches
    assert all(HEX32.fullmatch(ident) for ident in made)
    assert len(set(made)) == len(made)
    other = RequestIds()
    assert not set(made) & {other.new() for _ in range(300)}


def test_request_id_log_format_variable() -> None:
    formatter = compile_template("%(request_id) %(method) %(uri) %(status)")
    assert formatter(record()) == "4bf92f3577b34da6a3ce929d0e0e4736 GET /api/items?x=1 200"
    assert formatter(record(request_id="")) == "- GET /api/items?x=1 200"


# -- the summary line of an app exception ----------------------------------------------------


def _divide() -> float:
    return 1 / 0  # THE-RAISING-LINE


def _raising_line() -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.endswith("# THE-RAISING-LINE"))


def _caught() -> ZeroDivisionError:
    try:
        _divide()
    except ZeroDivisionError as exc:
        return exc
    raise AssertionError("did not raise")


def test_summary_names_id_request_exception_and_the_raising_line() -> None:
    exc = _caught()
    line, fields = format_app_exception(exc, "rid-1", "GET", "/boom")
    assert line == (
        f"app exception request_id=rid-1 GET /boom: ZeroDivisionError: division by zero "
        f"(at {__file__}:{_raising_line()})"
    )
    assert raised_at(exc) == (__file__, _raising_line())
    assert fields == {
        "request_id": "rid-1",
        "method": "GET",
        "uri": "/boom",
        "exception": "ZeroDivisionError",
        "exception_message": "division by zero",
        "file": __file__,
        "line": _raising_line(),
    }


def test_summary_of_a_body_iterator_points_into_the_generator() -> None:
    def body() -> Iterator[bytes]:
        yield b"first"
        raise KeyError("missing")  # THE-GENERATOR-LINE

    try:
        for _ in body():
            pass
    except KeyError as exc:
        line, fields = format_app_exception(exc, "", "POST", "/x", where="in close()")
    lines = Path(__file__).read_text().splitlines()
    expected = next(n for n, text in enumerate(lines, 1) if text.endswith("# THE-GENERATOR-LINE"))
    assert line.startswith("app exception in close() request_id=- POST /x: KeyError: 'missing' ")
    assert line.endswith(f"(at {__file__}:{expected})")
    assert fields["line"] == expected


def test_summary_keeps_one_line_and_names_non_builtin_types() -> None:
    class Oops(Exception):
        pass

    line, _ = format_app_exception(Oops("two\nlines\x1b[31m"), "r", "GET", "/a\nb")
    assert "\n" not in line and "\x1b" not in line
    assert "GET /a\\x0ab:" in line
    assert (
        f"{__name__}.test_summary_keeps_one_line_and_names_non_builtin_types.<locals>.Oops" in line
    )
    assert "(at " not in line  # never raised: no traceback, no location


def test_summary_survives_a_broken_str() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    line, _ = format_app_exception(Broken(), "r", "GET", "/")
    assert "<Broken.__str__ failed>" in line


def test_summary_then_traceback_in_one_write(capfd: pytest.CaptureFixture[str]) -> None:
    emit_app_exception(_caught(), "rid-2", "GET", "/boom")
    err = capfd.readouterr().err
    first, *rest = err.rstrip("\n").split("\n")
    assert first.startswith("app exception request_id=rid-2 GET /boom: ZeroDivisionError")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ZeroDivisionError: division by zero"


def test_log_traceback_off_leaves_the_summary_only(capfd: pytest.CaptureFixture[str]) -> None:
    configure(AppServerConfig(log_traceback=False))
    emit_app_exception(_caught(), "rid-3", "GET", "/boom")
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("app exception request_id=rid-3 ")


# -- log-drain ---------------------------------------------------------------------------------

HEALTH_LINE = (
    "[pid: 7|app: 0|req: 1/1] 127.0.0.1 () {8 vars in 120 bytes} [Fri Dec  4 20:00:00 2026] "
    "GET /healthz => generated 2 bytes in 0 msecs (HTTP/1.0 200) 3 headers in 90 bytes "
    "(1 switches on core 0)"
)
DEPLOY_INI = Path(__file__).resolve().parents[3] / "deploy" / "appserver.ini"


def _deploy_option(key: str) -> str:
    [value] = [entry.value for entry in read_ini(str(DEPLOY_INI), cwd="/") if entry.key == key]
    assert value is not None
    return value


def test_log_drain_drops_matching_lines_only(capfd: pytest.CaptureFixture[str]) -> None:
    configure(AppServerConfig(log_drains=(r"GET /healthz ", r"^noise")))
    emit_request(HEALTH_LINE, record(uri="/healthz"))
    emit("noise from somewhere")
    emit_request(HEALTH_LINE.replace("/healthz", "/api/items"), record())
    emit("spawned worker 1")
    assert capfd.readouterr().err.splitlines() == [
        HEALTH_LINE.replace("/healthz", "/api/items"),
        "spawned worker 1",
    ]


def test_the_deploy_drain_matches_only_the_local_health_check() -> None:
    """deploy/appserver.ini: its log-drain against lines of its own log-format."""
    formatter = request_formatter(_deploy_option("log-format"))
    pattern = re.compile(_deploy_option("log-drain"))
    # What the container healthcheck sends: a uwsgi GET /healthz, REMOTE_ADDR 127.0.0.1.
    probe = record(
        remote_addr="127.0.0.1", uri="/healthz", protocol="HTTP/1.0", host="", user_agent=""
    )
    line = formatter(probe)
    assert line.startswith("[pid: 641|worker: 2|core: 1] 127.0.0.1 (-) [")
    assert line.endswith(
        "GET /healthz => generated 512 bytes in 3 msecs (HTTP/1.0 200) "
        "request_id=4bf92f3577b34da6a3ce929d0e0e4736"
    )
    assert pattern.search(line)
    # Through edge the address is the client's, never the container's loopback.
    assert not pattern.search(formatter(dataclasses.replace(probe, remote_addr="172.18.0.4")))
    for uri in ("/healthz2", "/healthz?x=1", "/api/items", "/"):
        assert not pattern.search(formatter(dataclasses.replace(probe, uri=uri))), uri
    assert not pattern.search(formatter(dataclasses.replace(probe, method="POST")))
    assert not pattern.search("app exception request_id=x GET /healthz: KeyError")
    assert not pattern.search(HEALTH_LINE)  # uWSGI's default line is another format


# -- encoders ----------------------------------------------------------------------------------


def test_structured_json_request_line(capfd: pytest.CaptureFixture[str]) -> None:
    configure(AppServerConfig(log_encoders=(("json", ""),)))
    emit_request("the line as formatted", record())
    [line] = capfd.readouterr().err.splitlines()
    data = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", data.pop("time"))
    assert data == {
        "level": "info",
        "type": "request",
        "pid": 641,
        "msg": "the line as formatted",
        "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "method": "GET",
        "uri": "/api/items?x=1",
        "protocol": "HTTP/1.1",
        "status": 200,
        "size": 512,
        "duration_ms": 3.25,
        "remote_addr": "10.0.0.9",
        "host": "shop.example",
        "user_agent": "curl/8.5",
        "referer": "",
        "worker": 2,
        "core": 1,
    }


def test_structured_json_server_line_and_exception(capfd: pytest.CaptureFixture[str]) -> None:
    configure(AppServerConfig(log_encoders=(("json", ""),)))
    emit('spawned worker 1 "quoted"\nsecond line')
    emit_app_exception(_caught(), "rid-4", "GET", "/boom")
    server, exception = (json.loads(line) for line in capfd.readouterr().err.splitlines())
    assert server["type"] == "server" and server["level"] == "info"
    assert server["msg"] == 'spawned worker 1 "quoted"\nsecond line'
    assert exception["level"] == "error"
    assert exception["msg"].startswith("app exception request_id=rid-4 GET /boom: ")
    assert exception["request_id"] == "rid-4"
    assert exception["exception"] == "ZeroDivisionError"
    assert (exception["file"], exception["line"]) == (__file__, _raising_line())
    assert exception["traceback"].startswith("Traceback (most recent call last):")


def test_uwsgi_json_template_escapes_msg(capfd: pytest.CaptureFixture[str]) -> None:
    spec = parse_encoder('json {"unix":${unix}, "msg":"${msg}", "t":"${strftime:%Y}"}')
    configure(AppServerConfig(log_encoders=(spec,)))
    emit('a "quoted"\tline')
    data = json.loads(capfd.readouterr().err)
    assert data["msg"] == 'a "quoted"\tline'
    assert isinstance(data["unix"], int) and len(data["t"]) == 4


def test_format_prefix_suffix_and_the_one_newline(capfd: pytest.CaptureFixture[str]) -> None:
    steps = tuple(
        parse_encoder(raw) for raw in ("format [${msg}]", "prefix >> ", "suffix <<", "nl")
    )
    configure(AppServerConfig(log_encoders=steps))
    emit("hello")
    assert capfd.readouterr().err == ">> [hello]<<\n"  # nl gives the newline; none is added


def test_log_req_encoder_replaces_the_chain_for_request_lines(
    capfd: pytest.CaptureFixture[str],
) -> None:
    configure(
        AppServerConfig(log_encoders=(("prefix", "S "),), log_req_encoders=(("prefix", "R "),))
    )
    emit("server")
    emit_request("request", record())
    assert capfd.readouterr().err == "S server\nR request\n"


def test_drain_sees_the_line_before_encoding(capfd: pytest.CaptureFixture[str]) -> None:
    configure(AppServerConfig(log_drains=(r"^GET /healthz",), log_encoders=(("json", ""),)))
    emit_request("GET /healthz 200", record(uri="/healthz"))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("gzip", "encoder 'gzip' is not supported"),
        ("compress", "encoder 'compress' is not supported"),
        ("msgpack", "unknown encoder 'msgpack' (supported: json, format, prefix, suffix, nl)"),
        ("json:default {}", "named loggers (ENCODER:LOGGER) are not supported"),
        ("format", "encoder 'format' needs an argument"),
        ("nl x", "encoder 'nl' takes no argument"),
        ('json {"m":"${message}"}', "unknown variable ${message} (supported: ${msg}"),
        ("format ${msg", "unterminated ${"),
    ],
)
def test_bad_encoders_are_refused(raw: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_encoder(raw)
    assert message in str(info.value)


def test_every_supported_encoder_compiles() -> None:
    specs = tuple(
        parse_encoder(raw)
        for raw in ("json", "json ${msgnl}", "format ${millis} ${micros}", "prefix x", "nl")
    )
    assert len(compile_encoders(specs)) == 5


# -- option validation -------------------------------------------------------------------------

BASE = [Entry("socket", ":3031", "uwsgi.ini"), Entry("module", "mysite.wsgi", "uwsgi.ini")]


def _build(tmp_path: Path, key: str, value: str) -> AppServerConfig:
    return build_config([*BASE, Entry(key, value, "uwsgi.ini")], cwd=str(tmp_path))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("log-encoder", "gzip", "uwsgi.ini: log-encoder: encoder 'gzip' is not supported"),
        ("log-req-encoder", "xml", "uwsgi.ini: log-req-encoder: unknown encoder 'xml'"),
        ("log-drain", "([a-z", "uwsgi.ini: log-drain: invalid regular expression '([a-z'"),
        ("log-traceback", "sometimes", "uwsgi.ini: log-traceback: expected a boolean"),
        ("log-format", "%(method) %(nope)", "uwsgi.ini: log-format: log-format: unknown "),
        ("log-filter", "x", "uwsgi.ini: log-filter: not supported by appserver"),
        ("log-route", "x y", "uwsgi.ini: log-route: not supported by appserver"),
    ],
)
def test_bad_log_options_are_one_line_errors(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _build(tmp_path, key, value)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_log_options_build_the_config(tmp_path: Path) -> None:
    entries = [
        *BASE,
        Entry("log-drain", "GET /healthz", "uwsgi.ini"),
        Entry("log-drain", "^noise", "uwsgi.ini"),
        Entry("log-encoder", "json", "uwsgi.ini"),
        Entry("log-req-encoder", "format ${msg}", "uwsgi.ini"),
        Entry("log-traceback", "false", "uwsgi.ini"),
        Entry("log-format", "%(request_id) %(uri)", "uwsgi.ini"),
    ]
    config = build_config(entries, cwd=str(tmp_path))
    assert config.log_drains == ("GET /healthz", "^noise")
    assert config.log_encoders == (("json", ""),)
    assert config.log_req_encoders == (("format", "${msg}"),)
    assert config.log_traceback is False
    assert config.log_format == "%(request_id) %(uri)"
    configure(config)
    assert log._pipeline.tracebacks is False


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"uri": '/"quoted"\n\x00\u00e9', "user_agent": "caf\u00c3\u00a9", "referer": "\\"},
        {"msecs": -1.0, "request_id": "", "host": "\u2603"},
        {"msecs": 123456.78912},
    ],
)
def test_the_direct_request_json_equals_the_generic_one(changes: dict[str, object]) -> None:
    """The hot path writes the object by hand; it must say what the dict path says."""
    sample = record(**changes)
    direct = json.loads(log._request_json('msg "x"\n', sample))
    generic = {"level": "info", "type": "request", "pid": sample.pid, "msg": 'msg "x"\n'}
    generic.update(log.request_fields(sample))
    direct.pop("time")
    assert list(direct) == list(generic)
    assert direct == generic
