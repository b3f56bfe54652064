"""edge.config.load: YAML -> EdgeConfig, and every way it can refuse a config."""

from __future__ import annotations

import ipaddress
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from edge.config.load import (
    ConfigErrors,
    build_config,
    load_config,
    parse_config,
    parse_duration,
    parse_endpoint,
    parse_listen,
    parse_rate,
    parse_size,
    quick_config,
)
from edge.config.schema import (
    AccessRule,
    Endpoint,
    Expires,
    HeaderBuffers,
    Listen,
    ProxyHandler,
    ReturnHandler,
    StaticHandler,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "edge" / "examples"


def minimal(**location: Any) -> dict[str, Any]:
    """A one-server, one-location config around ``location`` (default: a return)."""
    loc = {"path": "/", **(location or {"return": 204})}
    return {
        "upstreams": {"app": {"servers": ["127.0.0.1:3031"]}},
        "servers": [{"listen": 8000, "locations": [loc]}],
    }


def issues(data: Any, **kwargs: Any) -> list[str]:
    kwargs.setdefault("check_paths", False)
    with pytest.raises(ConfigErrors) as info:
        build_config(data, **kwargs)
    return [str(issue) for issue in info.value.issues]


NON_STRING_KEY: dict[Any, Any] = {1: 2}  # YAML allows `1: 2`; our schema does not


def one_issue(data: Any, **kwargs: Any) -> str:
    found = issues(data, **kwargs)
    assert len(found) == 1, found
    return found[0]


# --- scalars -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1m", 1048576), ("8k", 8192), ("8K", 8192), ("1g", 1 << 30), ("512", 512), (0, 0), (10, 10)],
)
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["1x", "-1", "", "1.5m", True, None, -3, "m"])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60s", 60.0),
        ("500ms", 0.5),
        ("1m", 60.0),
        ("1h 30m", 5400.0),
        ("1m30s", 90.0),
        ("2d", 172800.0),
        ("5", 5.0),
        (5, 5.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: object, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1s", -1, True, "1s-", None])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_duration_negative_only_when_allowed() -> None:
    assert parse_duration("-1h", allow_negative=True) == -3600.0


@pytest.mark.parametrize(("text", "expected"), [("10r/s", 10000), ("30r/m", 500), ("1r/s", 1000)])
def test_parse_rate(text: str, expected: int) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["10", "10r/h", "0r/s", "r/s", 10])
def test_parse_rate_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (8000, Listen("0.0.0.0", 8000)),
        ("8000", Listen("0.0.0.0", 8000)),
        ("127.0.0.1:8080", Listen("127.0.0.1", 8080)),
        ("*:80", Listen("0.0.0.0", 80)),
        ("[::]:8000", Listen("::", 8000)),
        ("localhost:0", Listen("localhost", 0)),
    ],
)
def test_parse_listen(text: object, expected: Listen) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", [70000, "host", "::1:80", "[::1", "h:x", True, ""])
def test_parse_listen_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_listen(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:3031", Endpoint("127.0.0.1", 3031)),
        ("appserver:3031", Endpoint("appserver", 3031)),
        ("[::1]:3031", Endpoint("::1", 3031)),
        ("unix:/run/app.sock", Endpoint(path="/run/app.sock")),
    ],
)
def test_parse_endpoint(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


def test_endpoint_str_round_trips() -> None:
    for text in ("127.0.0.1:3031", "[::1]:3031", "unix:/run/app.sock"):
        assert str(parse_endpoint(text)) == text


@pytest.mark.parametrize("text", ["appserver", ":3031", "unix:", "::1:3031", 3031, "a:99999"])
def test_parse_endpoint_rejects(text: object) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(text)


# --- the examples and a full config -------------------------------------------------------


def test_seed_example_translates_both_server_blocks() -> None:
    config = load_config(EXAMPLES / "seed.yaml", check_paths=False)
    site, spa = config.servers
    assert site.listen == (Listen("0.0.0.0", 8000),)
    static, app = site.locations
    assert isinstance(static.handler, StaticHandler)
    assert static.handler.alias == "/teach/shiyanlou_project/syl/static/"
    assert isinstance(app.handler, ProxyHandler)
    assert app.handler.protocol == "uwsgi" and app.handler.ignore_client_abort
    assert config.upstream(app.handler.upstream).servers[0].endpoint == Endpoint("127.0.0.1", 3031)
    assert spa.listen == (Listen("0.0.0.0", 8080),)
    (root,) = spa.locations
    assert isinstance(root.handler, StaticHandler)
    assert root.handler.root == "/root/from/dist"
    assert root.handler.try_files == ("$uri", "$uri/", "/index.html")


def test_compose_example_loads() -> None:
    config = load_config(EXAMPLES / "compose.yaml", check_paths=False)
    assert config.worker_processes == "auto"
    app = config.upstream("app")
    assert app.servers[0].endpoint == Endpoint("appserver", 3031)
    assert app.balance == "least_conn"
    gunicorn = config.upstream("gunicorn")
    assert gunicorn.servers[0].endpoint == Endpoint("gunicorn", 8000)
    protocols = {
        loc.handler.protocol
        for server in config.servers
        for loc in server.locations
        if isinstance(loc.handler, ProxyHandler)
    }
    assert protocols == {"uwsgi", "http"}


def test_defaults_are_nginx_defaults() -> None:
    config = build_config(minimal())
    server = config.servers[0]
    assert server.client_max_body_size == 1024 * 1024
    assert server.client_header_buffer_size == 1024
    assert server.large_client_header_buffers == HeaderBuffers(4, 8192)
    assert (server.client_header_timeout, server.client_body_timeout, server.send_timeout) == (
        60.0,
        60.0,
        60.0,
    )
    assert (server.keepalive_timeout, server.keepalive_requests) == (75.0, 1000)
    up = config.upstream("app").servers[0]
    assert (up.weight, up.max_fails, up.fail_timeout, up.backup) == (1, 1, 10.0, False)
    assert config.access_log.path == "stdout" and config.access_log.format == "combined"
    assert config.error_log.path == "stderr" and config.error_log.level == "error"
    assert config.worker_processes == 1 and config.worker_connections == 512


def test_full_location_settings(tmp_path: Path) -> None:
    text = f"""
    upstreams:
      app:
        balance: ip_hash
        servers:
          - {{address: 10.0.0.1:3031, weight: 3, max_fails: 2, fail_timeout: 30s}}
          - {{address: unix:/run/app.sock, down: true}}
    limit_req_zones:
      one: {{rate: 5r/s, max_keys: 10}}
    limit_conn_zones:
      two: {{}}
    real_ip: {{trusted: [10.0.0.0/8], header: X-Forwarded-For, recursive: true}}
    servers:
      - listen: ["127.0.0.1:8000", "[::1]:8000"]
        server_name: [Example.COM., "*.example.org", "~^www\\\\d+\\\\."]
        large_client_header_buffers: 8 16k
        client_max_body_size: 5m
        locations:
          - path: /static/
            alias: {tmp_path}/
            index: [index.htm, index.html]
            expires: max
            gzip_static: on
            open_file_cache: {{max: 10, valid: 30s}}
          - path: "= /x"
            return: {{status: 301, location: /y}}
          - path: "~* \\\\.php$"
            return: 404
          - path: "@app"
            proxy: app
            protocol: http
            params: {{HTTP_X_FORWARDED_PROTO: $scheme, X: {{value: $http_x, if_not_empty: true}}}}
            proxy_read_timeout: 500ms
            next_upstream: error timeout http_502
            cache: {{valid: {{200: 10s}}, max_size: 1m}}
            access: [allow 127.0.0.1, "deny 10.0.0.0/8", deny all]
            limit_req: {{zone: one, burst: 5, nodelay: true, status: 429}}
            limit_conn: [{{zone: two, max: 3}}]
            client_max_body_size: 0
          - path: /
            root: {tmp_path}/
            try_files: $uri $uri/ @app
    """
    config = parse_config(textwrap.dedent(text))
    server = config.servers[0]
    assert server.listen == (Listen("127.0.0.1", 8000), Listen("::1", 8000))
    assert server.server_name == ("example.com", "*.example.org", "~^www\\d+\\.")
    assert server.large_client_header_buffers == HeaderBuffers(8, 16384)
    static, exact, regex, named, root = server.locations
    assert (static.match, exact.match, regex.match, named.match) == (
        "prefix",
        "exact",
        "regex_icase",
        "named",
    )
    assert isinstance(static.handler, StaticHandler)
    assert static.handler.alias == f"{tmp_path}/"
    assert static.handler.expires == Expires("max")
    assert static.handler.gzip_static
    assert static.handler.open_file_cache is not None and static.handler.open_file_cache.max == 10
    assert exact.handler == ReturnHandler(301, location="/y")
    assert regex.handler == ReturnHandler(404)
    proxy = named.handler
    assert isinstance(proxy, ProxyHandler)
    assert proxy.read_timeout == 0.5 and proxy.protocol == "http"
    assert [(p.name, p.value, p.if_not_empty) for p in proxy.params] == [
        ("HTTP_X_FORWARDED_PROTO", "$scheme", False),
        ("X", "$http_x", True),
    ]
    assert proxy.next_upstream == ("error", "timeout", "http_502")
    assert proxy.cache is not None and proxy.cache.valid == ((200, 10.0),)
    assert named.access == (
        AccessRule(True, ipaddress.ip_network("127.0.0.1/32")),
        AccessRule(False, ipaddress.ip_network("10.0.0.0/8")),
        AccessRule(False, None),
    )
    assert named.limit_req[0].burst == 5 and named.limit_req[0].status == 429
    assert named.limit_conn[0].max == 3
    assert named.client_max_body_size == 0
    assert isinstance(root.handler, StaticHandler) and root.handler.try_files[-1] == "@app"
    assert root.handler.root == str(tmp_path)  # a root never keeps a trailing slash
    assert config.limit_req_zones[0].rate_milli == 5000
    assert config.real_ip.recursive and config.real_ip.header == "X-Forwarded-For"
    assert config.upstream("app").servers[1].down


def test_relative_paths_resolve_against_the_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "dist").mkdir()
    config_file = tmp_path / "edge.yaml"
    config_file.write_text("servers: [{listen: 1, locations: [{path: /, root: dist}]}]\n")
    config = load_config(config_file)
    handler = config.servers[0].locations[0].handler
    assert isinstance(handler, StaticHandler) and handler.root == str(tmp_path / "dist")
    assert config.source == str(config_file)


def test_config_is_frozen() -> None:
    config = build_config(minimal())
    with pytest.raises(AttributeError):
        config.worker_connections = 3  # type: ignore[misc]


# --- error reporting: paths, collection, every check ------------------------------------


def test_error_path_names_the_yaml_node(tmp_path: Path) -> None:
    text = f"""
    upstreams: {{app: {{servers: [127.0.0.1:3031]}}}}
    servers:
      - listen: 8000
        locations:
          - {{path: /a, return: 204}}
          - {{path: /b, root: {tmp_path}}}
          - {{path: /static/, alias: {tmp_path}/missing/}}
    """
    with pytest.raises(ConfigErrors) as info:
        parse_config(textwrap.dedent(text))
    assert [str(i) for i in info.value.issues] == [
        "servers[0].locations[2].alias: directory does not exist"
    ]
    assert str(info.value) == "servers[0].locations[2].alias: directory does not exist"


def test_all_errors_are_collected_in_one_pass() -> None:
    data = {
        "worker_connections": 0,
        "upstreams": {"app": {"servers": ["nope"], "balance": "fastest"}},
        "servers": [
            {
                "listen": "x",
                "keepalive_timeout": "forever",
                "locations": [{"path": "/", "proxy": "ap"}, {"path": "static"}],
            }
        ],
    }
    found = issues(data)
    assert len(found) == 8, found
    # Reported in document order, though upstreams are built before servers.
    assert found[0].startswith("worker_connections:")
    assert found[1].startswith("upstreams.") and found[-1].startswith("servers[0]")
    assert any(f.startswith("upstreams.app.balance:") for f in found)
    assert any(f.startswith("upstreams.app.servers[0].address:") for f in found)
    assert any(f.startswith("servers[0].listen:") for f in found)
    assert any(f.startswith("servers[0].keepalive_timeout:") for f in found)
    assert "servers[0].locations[0].proxy: no upstream named 'ap' (did you mean 'app'?)" in found
    assert any(f.startswith("servers[0].locations[1]") for f in found)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "expected a mapping, got a list"),
        ({"servers": []}, "servers: at least one server is required"),
        ({}, "servers: at least one server is required"),
        ({"servers": {"listen": 1}}, "servers: expected a list of servers, got a mapping"),
        ({"servers": [3]}, "servers[0]: expected a mapping, got a number"),
        ({**minimal(), "server": []}, "server: unknown key (did you mean 'servers'?)"),
        (
            {**minimal(), "worker_processes": "many"},
            "worker_processes: expected a number of processes or auto, got 'many'",
        ),
        (
            {**minimal(), "worker_connections": "1k"},
            "worker_connections: expected an integer, got '1k'",
        ),
        ({**minimal(), **NON_STRING_KEY}, "keys must be strings, got 1"),
    ],
)
def test_top_level_errors(data: Any, expected: str) -> None:
    assert one_issue(data) == expected


@pytest.mark.parametrize(
    ("section", "value", "expected"),
    [
        (
            "access_log",
            {"format": "apache"},
            "access_log.format: no log format 'apache': combined, json or one of log_formats",
        ),
        (
            "access_log",
            {"path": 3},
            "access_log.path: expected a file path, stdout, stderr or off, got a number",
        ),
        ("access_log", {"where": "x"}, "access_log.where: unknown key"),
        (
            "error_log",
            {"level": "warning"},
            "error_log.level: expected one of debug, info, notice, warn, error, crit, "
            "alert, emerg, got 'warning' (did you mean 'warn'?)",
        ),
        (
            "error_log",
            {"path": None},
            "error_log.path: expected a file path or stderr, got nothing",
        ),
        (
            "real_ip",
            {"trusted": ["10.0.0.0/33"]},
            "real_ip.trusted[0]: '10.0.0.0/33' does not appear to be an IPv4 or IPv6 network",
        ),
        (
            "real_ip",
            {"trusted": [5]},
            "real_ip.trusted[0]: expected an address or CIDR, got a number",
        ),
        (
            "real_ip",
            {"header": "X Real"},
            "real_ip.header: expected an HTTP header name, got 'X Real'",
        ),
        ("real_ip", {"recursive": "yes"}, "real_ip.recursive: expected true or false, got 'yes'"),
        ("real_ip", [1], "real_ip: expected a mapping, got a list"),
    ],
)
def test_log_and_real_ip_errors(section: str, value: Any, expected: str) -> None:
    assert one_issue({**minimal(), section: value}) == expected


def test_access_log_off_and_file(tmp_path: Path) -> None:
    assert build_config({**minimal(), "access_log": False}).access_log.path is None
    assert build_config({**minimal(), "access_log": "off"}).access_log.path is None
    config = build_config({**minimal(), "access_log": "logs/a.log"}, base_dir=str(tmp_path))
    assert config.access_log.path == str(tmp_path / "logs" / "a.log")


@pytest.mark.parametrize(
    ("zones", "expected"),
    [
        (
            {"limit_req_zones": {"z": {}}},
            "limit_req_zones.z: missing required key 'rate' (like 10r/s)",
        ),
        (
            {"limit_req_zones": {"z": {"rate": "fast"}}},
            "limit_req_zones.z.rate: expected a rate like 10r/s or 30r/m, got 'fast'",
        ),
        (
            {"limit_req_zones": {"z": {"rate": "1r/s", "max_keys": 0}}},
            "limit_req_zones.z.max_keys: must be at least 1, got 0",
        ),
        (
            {"limit_req_zones": {"z": {"rate": "1r/s", "size": "10m"}}},
            "limit_req_zones.z.size: unknown key",
        ),
        ({"limit_req_zones": ["z"]}, "limit_req_zones: expected a mapping of names, got a list"),
        (
            {"limit_req_zones": {3: {"rate": "1r/s"}}},
            "limit_req_zones: names must be non-empty strings, got 3",
        ),
        (
            {"limit_conn_zones": {"c": {"max_keys": -1}}},
            "limit_conn_zones.c.max_keys: must be at least 1, got -1",
        ),
    ],
)
def test_zone_errors(zones: dict[str, Any], expected: str) -> None:
    assert one_issue({**minimal(), **zones}) == expected


def upstream_issue(spec: Any) -> str:
    data = minimal()
    data["upstreams"] = {"app": spec}
    return one_issue(data)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, "upstreams.app: missing required key 'servers'"),
        ({"servers": []}, "upstreams.app.servers: an upstream needs at least one server"),
        ({"servers": [5]}, "upstreams.app.servers[0]: expected a mapping, got a number"),
        (
            {"servers": [{"weight": 2}]},
            "upstreams.app.servers[0]: missing required key 'address' (host:port or unix:/path)",
        ),
        ({"servers": ["appserver"]}, "upstreams.app.servers[0].address: 'appserver' has no port"),
        (
            {"servers": ["::1:3031"]},
            "upstreams.app.servers[0].address: write IPv6 addresses in brackets: [::1:3031]:PORT",
        ),
        ({"servers": ["unix:"]}, "upstreams.app.servers[0].address: unix: needs a socket path"),
        (
            {"servers": [{"address": "a:1", "weight": 0}]},
            "upstreams.app.servers[0].weight: must be at least 1, got 0",
        ),
        (
            {"servers": [{"address": "a:1", "max_fails": -1}]},
            "upstreams.app.servers[0].max_fails: must be at least 0, got -1",
        ),
        (
            {"servers": [{"address": "a:1", "fail_timeout": "soon"}]},
            "upstreams.app.servers[0].fail_timeout: expected a duration like 60s or "
            "500ms, got 'soon'",
        ),
        (
            {"servers": [{"address": "a:1", "backup": 1}]},
            "upstreams.app.servers[0].backup: expected true or false, got 1",
        ),
        (
            {"servers": [{"address": "a:1", "wieght": 2}]},
            "upstreams.app.servers[0].wieght: unknown key (did you mean 'weight'?)",
        ),
        (
            {"servers": [{"address": "a:1", "backup": True}]},
            "upstreams.app.servers: every server is a backup; at least one must not be",
        ),
        (
            {"servers": ["a:1", {"address": "b:1", "backup": True}], "balance": "ip_hash"},
            "upstreams.app.servers[1].backup: balance ip_hash does not support backup servers",
        ),
        (
            {"servers": ["a:1"], "balance": "least_conns"},
            "upstreams.app.balance: expected one of round_robin, least_conn, ip_hash, got "
            "'least_conns' (did you mean 'least_conn'?)",
        ),
        (
            {"servers": ["a:1"], "resolve": "often"},
            "upstreams.app.resolve: expected a duration like 60s or 500ms, got 'often'",
        ),
        (
            {"servers": ["a:1"], "keepalive": -2},
            "upstreams.app.keepalive: must be at least 0, got -2",
        ),
        ("a:1", "upstreams.app: expected a mapping, got a string"),
    ],
)
def test_upstream_errors(spec: Any, expected: str) -> None:
    assert upstream_issue(spec) == expected


def test_upstream_resolve_off() -> None:
    data = minimal()
    data["upstreams"]["app"]["resolve"] = False
    assert build_config(data).upstream("app").resolve == 0.0


def server_issue(**server: Any) -> str:
    data = minimal()
    data["servers"][0].update(server)
    return one_issue(data)


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({"listen": 70000}, "servers[0].listen: port 70000 is out of range 0-65535"),
        ({"listen": ["1.2.3.4:80", "host"]}, "servers[0].listen[1]: 'host' has no port"),
        ({"listen": []}, "servers[0].listen: needs at least one address"),
        ({"server_name": 5}, "servers[0].server_name: expected a host name, got a number"),
        (
            {"server_name": ["a", "~(x"]},
            "servers[0].server_name[1]: invalid regex: missing ), unterminated subpattern "
            "at position 0",
        ),
        (
            {"large_client_header_buffers": "4"},
            "servers[0].large_client_header_buffers: expected 'NUMBER SIZE' like '4 8k', got '4'",
        ),
        (
            {"large_client_header_buffers": "0 8k"},
            "servers[0].large_client_header_buffers: must be at least 1, got 0",
        ),
        (
            {"client_max_body_size": "1 MB"},
            "servers[0].client_max_body_size: expected a size like 1m or 8k, got '1 MB'",
        ),
        (
            {"client_header_buffer": "1k"},
            "servers[0].client_header_buffer: unknown key (did you mean "
            "'client_header_buffer_size'?)",
        ),
        ({"send_timeout": -1}, "servers[0].send_timeout: a duration cannot be negative"),
        (
            {"keepalive_requests": 1.5},
            "servers[0].keepalive_requests: expected an integer, got 1.5",
        ),
        ({"default_server": "yes"}, "servers[0].default_server: expected true or false, got 'yes'"),
        (
            {"locations": {"path": "/"}},
            "servers[0].locations: expected a list of locations, got a mapping",
        ),
    ],
)
def test_server_errors(server: dict[str, Any], expected: str) -> None:
    assert server_issue(**server) == expected


def test_two_default_servers_on_one_address() -> None:
    data = minimal()
    data["servers"] = [
        {"listen": 80, "default_server": True, "locations": []},
        {"listen": 80, "default_server": True, "locations": []},
    ]
    assert one_issue(data) == (
        "servers[1].default_server: 0.0.0.0:80 already has a default server (servers[0])"
    )


def test_one_name_twice_on_one_address() -> None:
    data = minimal()
    data["servers"] = [
        {"listen": 80, "server_name": "a.com"},
        {"listen": 81, "server_name": "a.com"},
        {"listen": 80, "server_name": ["b.com", "A.com"]},
    ]
    assert (
        one_issue(data)
        == "servers[2].server_name: 'a.com' on 0.0.0.0:80 is already used by servers[0]"
    )


def location_issues(*locations: Any, check_paths: bool = False) -> list[str]:
    data = minimal()
    data["servers"][0]["locations"] = list(locations)
    return issues(data, check_paths=check_paths)


def location_issue(location: Any, check_paths: bool = False) -> str:
    found = location_issues(location, check_paths=check_paths)
    assert len(found) == 1, found
    return found[0]


L = "servers[0].locations[0]"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/", f"{L}: expected a mapping, got a string"),
        (
            {"return": 204},
            f"{L}.path: missing: every location needs a path like /static/ or '= /favicon.ico'",
        ),
        ({"path": 3, "return": 204}, f"{L}.path: expected a location path, got a number"),
        (
            {"path": "static", "return": 204},
            f"{L}.path: a path must start with '/' (or be '= /x', '^~ /x', '~ regex', '~* "
            f"regex', '@name'), got 'static'",
        ),
        ({"path": "=", "return": 204}, f"{L}.path: '=' needs a pattern after it"),
        ({"path": "= x", "return": 204}, f"{L}.path: a path must start with '/', got 'x'"),
        (
            {"path": "~ (", "return": 204},
            f"{L}.path: invalid regex: missing ), unterminated subpattern at position 0",
        ),
        ({"path": "@", "return": 204}, f"{L}.path: a named location needs a name after '@'"),
        (
            {"path": "/"},
            f"{L}: a location needs one handler: root or alias (static files), proxy (an "
            f"upstream), return (a fixed response), or stub_status, metrics or status_page "
            f"(edge's own state)",
        ),
        (
            {"path": "/", "root": "/srv", "proxy": "app"},
            f"{L}: a location has exactly one handler, this one has static, proxy",
        ),
        (
            {"path": "/", "proxy": "app", "try_files": ["$uri", "=404"]},
            f"{L}.try_files: does not apply to a proxy location",
        ),
        (
            {"path": "/", "root": "/srv", "protocol": "http"},
            f"{L}.protocol: does not apply to a static location",
        ),
        (
            {"path": "/", "return": 204, "index": "a"},
            f"{L}.index: does not apply to a return location",
        ),
        (
            {"path": "/", "return": 204, "alais": "/x"},
            f"{L}.alais: unknown key (did you mean 'alias'?)",
        ),
        (
            {"path": "/", "root": "/srv", "alias": "/srv"},
            f"{L}.alias: root and alias are exclusive; use one",
        ),
        (
            {"path": "~ x", "alias": "/srv"},
            f"{L}.alias: alias cannot be used in a regex location; use root",
        ),
        ({"path": "/", "root": 5}, f"{L}.root: expected a directory path, got a number"),
        (
            {"path": "/", "root": "/srv", "try_files": "$uri"},
            f"{L}.try_files: needs at least two entries: files to try, then a fallback",
        ),
        (
            {"path": "/", "root": "/srv", "try_files": {"a": 1}},
            f"{L}.try_files: expected a list like [$uri, $uri/, /index.html], got a mapping",
        ),
        (
            {"path": "/", "root": "/srv", "try_files": ["=404", "$uri"]},
            f"{L}.try_files[0]: '=404' is only allowed as the last entry",
        ),
        (
            {"path": "/", "root": "/srv", "try_files": ["$uri", "=4040"]},
            f"{L}.try_files[1]: invalid status code '=4040'",
        ),
        (
            {"path": "/", "root": "/srv", "try_files": ["@x", "$uri"]},
            f"{L}.try_files[0]: '@x' is only allowed as the last entry",
        ),
        (
            {"path": "/", "root": "/srv", "try_files": ["uri", "/i"]},
            f"{L}.try_files[0]: 'uri' must start with '/', '$', '=' or '@'",
        ),
        (
            {"path": "/", "root": "/srv", "try_files": ["$url", "/i"]},
            f"{L}.try_files[0]: unknown variable $url",
        ),
        (
            {"path": "/", "root": "/srv", "try_files": ["$uri", 3]},
            f"{L}.try_files[1]: expected a string, got a number",
        ),
        (
            {"path": "/", "root": "/srv", "try_files": ["$uri", "@nowhere"]},
            f"{L}.try_files: no named location '@nowhere' in this server",
        ),
        (
            {"path": "/", "root": "/srv", "index": []},
            f"{L}.index: expected a file name or a list of them, got []",
        ),
        (
            {"path": "/", "root": "/srv", "expires": "someday"},
            f"{L}.expires: expected off, epoch, max or a duration like 30d, got 'someday'",
        ),
        (
            {"path": "/", "root": "/srv", "autoindex": "off "},
            f"{L}.autoindex: expected true or false, got 'off '",
        ),
        (
            {"path": "/", "root": "/srv", "open_file_cache": {"size": 3}},
            f"{L}.open_file_cache.size: unknown key",
        ),
        (
            {"path": "/", "root": "/srv", "open_file_cache": {"min_uses": 0}},
            f"{L}.open_file_cache.min_uses: must be at least 1, got 0",
        ),
        ({"path": "/", "proxy": "django"}, f"{L}.proxy: no upstream named 'django'"),
        ({"path": "/", "proxy": ["app"]}, f"{L}.proxy: expected an upstream name, got a list"),
        (
            {"path": "/", "proxy": "app", "protocol": "fastcgi"},
            f"{L}.protocol: expected one of uwsgi, http, got 'fastcgi'",
        ),
        (
            {"path": "/", "proxy": "app", "params": ["A"]},
            f"{L}.params: expected a mapping of NAME: value, got a list",
        ),
        (
            {"path": "/", "proxy": "app", "params": {"A B": "x"}},
            f"{L}.params.A B: a param name is letters, digits, '_', '-' or '.'",
        ),
        (
            {"path": "/", "proxy": "app", "params": {"A": "$shceme"}},
            f"{L}.params.A: unknown variable $shceme",
        ),
        (
            {"path": "/", "proxy": "app", "params": {"A": "cost $"}},
            f"{L}.params.A: unknown variable $",
        ),
        (
            {"path": "/", "proxy": "app", "params": {"A": None}},
            f"{L}.params.A: expected a string value, got nothing",
        ),
        (
            {"path": "/", "proxy": "app", "params": {"A": {"value": "x", "if_empty": 1}}},
            f"{L}.params.A.if_empty: unknown key (did you mean 'if_not_empty'?)",
        ),
        (
            {"path": "/", "proxy": "app", "host_header": "$hots"},
            f"{L}.host_header: unknown variable $hots",
        ),
        (
            {"path": "/", "proxy": "app", "next_upstream": ["eror"]},
            f"{L}.next_upstream: unknown condition 'eror' (did you mean 'error'?)",
        ),
        (
            {"path": "/", "proxy": "app", "next_upstream": ["off", "error"]},
            f"{L}.next_upstream: off cannot be combined with other conditions",
        ),
        (
            {"path": "/", "proxy": "app", "modifier1": 256},
            f"{L}.modifier1: must be at most 255, got 256",
        ),
        (
            {"path": "/", "proxy": "app", "proxy_read_timeout": "1 minute"},
            f"{L}.proxy_read_timeout: expected a duration like 60s or 500ms, got '1 minute'",
        ),
        (
            {"path": "/", "proxy": "app", "cache": {"valid": {500: "1s"}}},
            f"{L}.cache.valid.500: only 200, 301, 302 and 404 responses are cached",
        ),
        (
            {"path": "/", "proxy": "app", "cache": {"valid": []}},
            f"{L}.cache.valid: expected a mapping of status: duration, got a list",
        ),
        (
            {"path": "/", "proxy": "app", "cache": {"valid": {200: "x"}}},
            f"{L}.cache.valid.200: expected a duration like 60s or 500ms, got 'x'",
        ),
        (
            {"path": "/", "proxy": "app", "cache": {"max_size": "big"}},
            f"{L}.cache.max_size: expected a size like 1m or 8k, got 'big'",
        ),
        ({"path": "/", "return": {"body": "x"}}, f"{L}.return: missing required key 'status'"),
        ({"path": "/", "return": 700}, f"{L}.return.status: must be at most 599, got 700"),
        ({"path": "/", "return": "301 /x"}, f"{L}.return: expected a mapping, got a string"),
        ({"path": "/", "return": {"status": 302}}, f"{L}.return: a 302 redirect needs 'location'"),
        (
            {"path": "/", "return": {"status": 301, "location": "/", "body": "x"}},
            f"{L}.return.body: a redirect has a location, not a body",
        ),
        (
            {"path": "/", "return": {"status": 200, "location": "/"}},
            f"{L}.return.location: only redirects (301, 302, 303, 307, 308) take a location",
        ),
        (
            {"path": "/", "return": 204, "access": ["permit all"]},
            f"{L}.access[0]: expected 'allow CIDR', 'deny CIDR' or 'deny all', got 'permit all'",
        ),
        (
            {"path": "/", "return": 204, "access": ["deny 300.1.1.1"]},
            f"{L}.access[0]: '300.1.1.1' does not appear to be an IPv4 or IPv6 network",
        ),
        (
            {"path": "/", "return": 204, "access": [5]},
            f"{L}.access[0]: expected 'allow CIDR', 'deny CIDR' or 'deny all', got a number",
        ),
        (
            {"path": "/", "return": 204, "limit_req": {"burst": 5}},
            f"{L}.limit_req: missing required key 'zone'",
        ),
        (
            {"path": "/", "return": 204, "limit_req": {"zone": "one"}},
            f"{L}.limit_req.zone: no zone 'one' in limit_req_zones",
        ),
        (
            {"path": "/", "return": 204, "limit_conn": {"zone": "c", "max": 1}},
            f"{L}.limit_conn.zone: no zone 'c' in limit_conn_zones",
        ),
        (
            {"path": "/", "return": 204, "client_max_body_size": "lots"},
            f"{L}.client_max_body_size: expected a size like 1m or 8k, got 'lots'",
        ),
    ],
)
def test_location_errors(location: Any, expected: str) -> None:
    assert location_issue(location) == expected


def test_a_rule_with_an_unknown_zone_and_a_missing_key_reports_both() -> None:
    # The loader used to stop at the zone; the missing max is just as wrong.
    assert location_issues({"path": "/", "return": 204, "limit_conn": {"zone": "c"}}) == [
        f"{L}.limit_conn: missing required key 'max' (connections per client)",
        f"{L}.limit_conn.zone: no zone 'c' in limit_conn_zones",
    ]


def limits_config(**location: Any) -> dict[str, Any]:
    data = minimal(**location)
    data["limit_req_zones"] = {"one": {"rate": "1r/s"}}
    data["limit_conn_zones"] = {"conn": None}
    return data


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            {"limit_req": {"zone": "one", "nodelay": True, "delay": 2}},
            f"{L}.limit_req.delay: nodelay and delay are exclusive",
        ),
        (
            {"limit_req": [{"zone": "one", "status": 302}]},
            f"{L}.limit_req[0].status: must be at least 400, got 302",
        ),
        (
            {"limit_req": [{"zone": "one", "burst": -1}]},
            f"{L}.limit_req[0].burst: must be at least 0, got -1",
        ),
        (
            {"limit_req": {"zone": "ones"}},
            f"{L}.limit_req.zone: no zone 'ones' in limit_req_zones (did you mean 'one'?)",
        ),
        (
            {"limit_conn": {"zone": "conn"}},
            f"{L}.limit_conn: missing required key 'max' (connections per client)",
        ),
        (
            {"limit_conn": {"zone": "conn", "max": 0}},
            f"{L}.limit_conn.max: must be at least 1, got 0",
        ),
    ],
)
def test_limit_rule_errors(rule: dict[str, Any], expected: str) -> None:
    assert one_issue(limits_config(**{"return": 204}, **rule)) == expected


def test_duplicate_locations() -> None:
    found = location_issues(
        {"path": "/a", "return": 204},
        {"path": "^~ /a", "return": 204},
        {"path": "= /a", "return": 204},
    )
    assert found == [
        "servers[0].locations[1].path: duplicate location '^~ /a' (also servers[0].locations[0])"
    ]


def test_handler_errors_are_reported_even_when_the_path_is_bad() -> None:
    found = location_issues({"path": "nope", "proxy": "nowhere"})
    assert found == [
        f"{L}.path: a path must start with '/' (or be '= /x', '^~ /x', '~ regex', '~* "
        f"regex', '@name'), got 'nope'",
        f"{L}.proxy: no upstream named 'nowhere'",
    ]


def test_directory_checks(tmp_path: Path) -> None:
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    assert location_issue({"path": "/", "root": str(tmp_path / "no")}, check_paths=True) == (
        f"{L}.root: directory does not exist"
    )
    assert location_issue({"path": "/", "root": str(a_file)}, check_paths=True) == (
        f"{L}.root: not a directory"
    )


def test_yaml_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_config("servers: [\n  {listen: 1\n", source="edge.yaml")
    (issue,) = info.value.issues
    assert issue.path == ""
    assert str(issue).startswith("edge.yaml:3:1: invalid YAML:")


def test_yaml_duplicate_keys_are_refused() -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_config("servers: []\nservers: []\n", source="edge.yaml")
    assert str(info.value) == "edge.yaml:2:1: invalid YAML: found duplicate key 'servers'"


def test_missing_file() -> None:
    with pytest.raises(ConfigErrors) as info:
        load_config("/nonexistent/edge.yaml")
    assert str(info.value) == "/nonexistent/edge.yaml: No such file or directory"


# --- quick modes ----------------------------------------------------------------------------


def test_quick_proxy_uwsgi_several_backends() -> None:
    config = quick_config(
        listen="127.0.0.1:8080", proxies=["uwsgi://127.0.0.1:3031", "uwsgi://127.0.0.1:3032"]
    )
    (server,) = config.servers
    assert server.listen == (Listen("127.0.0.1", 8080),)
    (location,) = server.locations
    assert location.path == "/" and isinstance(location.handler, ProxyHandler)
    assert location.handler.protocol == "uwsgi"
    upstream = config.upstream(location.handler.upstream)
    assert [s.endpoint for s in upstream.servers] == [
        Endpoint("127.0.0.1", 3031),
        Endpoint("127.0.0.1", 3032),
    ]


def test_quick_proxy_http_and_unix() -> None:
    config = quick_config(proxies=["http://gunicorn:8000/"])
    handler = config.servers[0].locations[0].handler
    assert isinstance(handler, ProxyHandler) and handler.protocol == "http"
    config = quick_config(proxies=["uwsgi://unix:/run/app.sock"])
    assert config.upstreams[0].servers[0].endpoint == Endpoint(path="/run/app.sock")


def test_quick_root_and_static(tmp_path: Path) -> None:
    (tmp_path / "static").mkdir()
    config = quick_config(root=str(tmp_path))
    handler = config.servers[0].locations[0].handler
    assert isinstance(handler, StaticHandler) and handler.root == str(tmp_path)
    config = quick_config(
        proxies=["uwsgi://127.0.0.1:3031"], statics=[f"/static={tmp_path / 'static'}"]
    )
    static, proxy = config.servers[0].locations
    assert static.path == "/static/"
    assert isinstance(static.handler, StaticHandler)
    assert static.handler.alias == f"{tmp_path / 'static'}/"
    assert isinstance(proxy.handler, ProxyHandler)


def test_quick_relative_dirs_resolve_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dist").mkdir()
    monkeypatch.chdir(tmp_path)
    handler = quick_config(root="dist").servers[0].locations[0].handler
    assert isinstance(handler, StaticHandler) and handler.root == os.path.join(tmp_path, "dist")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, ["nothing to serve: give --proxy URL, --root DIR or --static PREFIX=DIR"]),
        ({"listen": "nope", "proxies": ["uwsgi://a:1"]}, ["--listen: 'nope' has no port"]),
        (
            {"proxies": ["fastcgi://a:1"]},
            ["--proxy: expected uwsgi://HOST:PORT or http://HOST:PORT, got 'fastcgi://a:1'"],
        ),
        ({"proxies": ["uwsgi://a"]}, ["--proxy: 'a' has no port"]),
        (
            {"proxies": ["uwsgi://a:1", "http://b:2"]},
            ["--proxy: all backends must use the same protocol (uwsgi:// or http://)"],
        ),
        ({"proxies": ["uwsgi://a:1", "uwsgi://b"]}, ["--proxy[1]: 'b' has no port"]),
        (
            {"proxies": ["uwsgi://a:1"], "root": "/tmp"},
            ["--root: --root and --proxy both serve '/'; serve files with --static PREFIX=DIR"],
        ),
        ({"root": "/nonexistent-dir"}, ["--root: directory does not exist"]),
        (
            {"statics": ["static=/tmp"]},
            ["--static: expected PREFIX=DIR like /static=./static, got 'static=/tmp'"],
        ),
        ({"statics": ["/s=/nonexistent-dir"]}, ["--static: directory does not exist"]),
        (
            {"statics": ["/s=/tmp", "/s/=/tmp"]},
            ["--static[1]: /s/ is already served by --static[0]"],
        ),
    ],
)
def test_quick_errors(kwargs: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(ConfigErrors) as info:
        quick_config(**kwargs)
    assert [str(issue) for issue in info.value.issues] == expected


# --- pinned before the declarative loader: every message and shorthand not tested above ---------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"listen": "[::1]x"},
            "servers[0].listen: unexpected 'x' after ']' in '[::1]x'",
        ),
        ({"listen": "[::1]"}, "servers[0].listen: '[::1]' has no port"),
        ({"listen": True}, "servers[0].listen: expected a port or host:port, got True"),
        ({"listen": "h:x"}, "servers[0].listen: invalid port in 'h:x'"),
        ({"listen": "[::1"}, "servers[0].listen: unclosed '[' in '[::1'"),
        ({"listen": None}, "servers[0].listen: needs at least one address"),
        (
            {"client_max_body_size": -1},
            "servers[0].client_max_body_size: a size cannot be negative",
        ),
        (
            {"large_client_header_buffers": "4 0"},
            "servers[0].large_client_header_buffers: the buffer size must be positive",
        ),
        (
            {"large_client_header_buffers": {"numbr": 2}},
            "servers[0].large_client_header_buffers: expected 'NUMBER SIZE' like '4 8k', "
            "got {'numbr': 2}",
        ),
        (NON_STRING_KEY, "servers[0]: keys must be strings, got 1"),
    ],
)
def test_pinned_server_errors(data: dict[Any, Any], expected: str) -> None:
    config = minimal()
    config["servers"][0].update(data)
    assert one_issue(config) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"upstreams": {"app": {"servers": [{"address": 5}]}}},
            "upstreams.app.servers[0].address: expected host:port or unix:/path, got 5",
        ),
        (
            {"upstreams": {"app": {"servers": [":3031"]}}},
            "upstreams.app.servers[0].address: ':3031' has no host",
        ),
        ({"upstreams": {"app": None}}, "upstreams.app: expected a mapping, got nothing"),
        (
            {"limit_req_zones": {"z": {"rate": "0r/s"}}},
            "limit_req_zones.z.rate: rate '0r/s' is zero",
        ),
        ({"limit_req_zones": {"z": "1r/s"}}, "limit_req_zones.z: expected a mapping, got a string"),
        ({"limit_conn_zones": {"z": 5}}, "limit_conn_zones.z: expected a mapping, got a number"),
        (
            {"worker_processes": 0},
            "worker_processes: expected a number of processes or auto, got 0",
        ),
    ],
)
def test_pinned_section_errors(data: dict[str, Any], expected: str) -> None:
    assert one_issue({**minimal(), **data}) == expected


def test_pinned_server_list_errors() -> None:
    assert one_issue({"servers": [None]}) == "servers[0]: expected a mapping, got nothing"
    assert one_issue({"servers": None}) == "servers: at least one server is required"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        (
            {"root": "/srv", "autoindex": True},
            f"{L}.autoindex: directory listings are not implemented: use index or try_files",
        ),
        ({"root": None}, f"{L}.root: expected a directory path, got nothing"),
        (
            {"root": "/srv", "expires": True},
            f"{L}.expires: expected off, epoch, max or a duration like 30d, got True",
        ),
        ({"proxy": "app", "host_header": 5}, f"{L}.host_header: expected a string, got a number"),
        (
            {"proxy": "app", "next_upstream": 5},
            f"{L}.next_upstream: expected a list of conditions like [error, timeout], got 5",
        ),
        (
            {"proxy": "app", "params": {"A": ["x"]}},
            f"{L}.params.A: expected a string value, got a list",
        ),
        ({"proxy": ""}, f"{L}.proxy: expected an upstream name, got ''"),
        (
            {"proxy": "app", "cache": {"valid": {}}},
            f"{L}.cache.valid: expected a mapping of status: duration, got an empty mapping",
        ),
        (
            {"return": {"status": 200, "body": 5}},
            f"{L}.return.body: expected a string, got a number",
        ),
        (
            {"return": 204, "limit_req": {"zone": 3}},
            f"{L}.limit_req.zone: expected a zone name, got 3",
        ),
        (
            {"return": 204, "limit_conn": {"max": 1}},
            f"{L}.limit_conn: missing required key 'zone'",
        ),
        (
            {"return": 204, "access": [{"allow": "10.0.0.0/8", "deny": "all"}]},
            f"{L}.access[0]: expected 'allow CIDR', 'deny CIDR' or 'deny all', got a mapping",
        ),
    ],
)
def test_pinned_location_errors(location: dict[str, Any], expected: str) -> None:
    assert location_issue({"path": "/", **location}) == expected


def test_pinned_quick_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        quick_config(root=str(tmp_path), statics=[f"/={tmp_path}"])
    assert [str(issue) for issue in info.value.issues] == [
        "--root: '/' is already served by --static"
    ]
    with pytest.raises(ConfigErrors) as info:
        quick_config(proxies=["uwsgi://a:1"], statics=[f"/={tmp_path}"])
    assert [str(issue) for issue in info.value.issues] == [
        "--proxy: '/' is already served by --static"
    ]


def test_pinned_file_not_utf8(tmp_path: Path) -> None:
    config_file = tmp_path / "edge.yaml"
    config_file.write_bytes(b"servers: \xff\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(config_file)
    assert str(info.value) == f"{config_file}: not UTF-8 text (invalid start byte)"


def first_location(**location: Any) -> Any:
    return build_config(minimal(path="/", **location)).servers[0].locations[0]


def test_pinned_location_shorthands() -> None:
    handler = first_location(root="/srv", index="a.html b.html").handler
    assert isinstance(handler, StaticHandler) and handler.index == ("a.html", "b.html")
    assert first_location(root="/srv", expires="epoch").handler.expires == Expires("epoch")
    assert first_location(root="/srv", expires="-1h").handler.expires == Expires("after", -3600)
    assert first_location(root="/srv", expires="off").handler.expires is None
    assert first_location(root="/srv", gzip_static="on").handler.gzip_static is True
    assert first_location(root="/srv", autoindex=False).handler.autoindex is False
    cache = first_location(root="/srv", open_file_cache=True).handler.open_file_cache
    assert cache is not None and cache.max == 1000
    assert first_location(root="/srv", open_file_cache="off").handler.open_file_cache is None
    proxy = first_location(proxy="app", cache=True, params={"A": 5}, next_upstream="off").handler
    assert isinstance(proxy, ProxyHandler)
    assert proxy.cache is not None and proxy.cache.valid == ((200, 1.0), (301, 1.0), (404, 1.0))
    assert [(p.name, p.value) for p in proxy.params] == [("A", "5")]
    assert proxy.next_upstream == ()
    assert first_location(proxy="app", next_upstream=False).handler.next_upstream == ()
    assert first_location(proxy="app", cache="off").handler.cache is None
    location = first_location(
        **{"return": 403, "access": [{"allow": "10.0.0.0/8"}, {"deny": "all"}]}
    )
    assert location.handler == ReturnHandler(403)
    assert location.access == (
        AccessRule(True, ipaddress.ip_network("10.0.0.0/8")),
        AccessRule(False),
    )
    assert first_location(**{"return": 204, "access": "deny all"}).access == (AccessRule(False),)


def test_pinned_section_shorthands(tmp_path: Path) -> None:
    data = minimal()
    data["upstreams"]["app"] = {"servers": "a:1", "resolve": "off"}
    data["servers"][0].update(
        listen="8000", server_name="A.com.", large_client_header_buffers=[2, "1k"]
    )
    data["real_ip"] = {"trusted": "10.0.0.0/8"}
    data["error_log"] = "logs/e.log"
    data["access_log"] = {"path": "off", "format": "json"}
    config = build_config(data, base_dir=str(tmp_path))
    assert config.upstream("app").servers[0].endpoint == Endpoint("a", 1)
    assert config.upstream("app").resolve == 0.0
    server = config.servers[0]
    assert server.listen == (Listen("0.0.0.0", 8000),)
    assert server.server_name == ("a.com",)
    assert server.large_client_header_buffers == HeaderBuffers(2, 1024)
    assert config.real_ip.trusted == (ipaddress.ip_network("10.0.0.0/8"),)
    assert config.error_log.path == str(tmp_path / "logs" / "e.log")
    assert (config.access_log.path, config.access_log.format) == (None, "json")
    data["servers"][0].update(server_name=None, large_client_header_buffers={"number": 2})
    data["error_log"] = None
    data["access_log"] = None
    config = build_config(data)
    assert config.servers[0].server_name == ()
    assert config.servers[0].large_client_header_buffers == HeaderBuffers(2, 8192)
    assert config.error_log.path == "stderr"
    assert config.access_log.path is None
