"""error_page / add_header / gzip: the config (edge -t messages), nginx's inheritance, and
gzip's decision, without sockets (the integration tests run them in a real edge)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.config.load import ConfigErrors, build_config
from edge.config.schema import AddHeader, ErrorPage, Location, ReturnHandler, Server
from edge.gzip_filter import compressible
from edge.response_rules import GzipRules, rules_for


def issues(data: Any) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        build_config(data, check_paths=False)
    return [str(issue) for issue in info.value.issues]


def server(**keys: Any) -> dict[str, Any]:
    return {"servers": [{"listen": 8080, "locations": [{"path": "/", "return": 204}], **keys}]}


@pytest.mark.parametrize(
    ("text", "page"),
    [
        ("404 /404.html", ErrorPage((404,), "/404.html")),
        ("500 502 =200 /50x.html", ErrorPage((500, 502), "/50x.html", 200)),
        ("404 = @app", ErrorPage((404,), "@app", None, True)),
        ("403 http://x.test/", ErrorPage((403,), "http://x.test/")),
        ("404 =301 https://x.test$uri", ErrorPage((404,), "https://x.test$uri", 301)),
    ],
)
def test_error_page_is_written_as_nginx_writes_it(text: str, page: ErrorPage) -> None:
    data = server(error_page=text, locations=[{"path": "@app", "return": 204}])
    assert build_config(data, check_paths=False).servers[0].error_page == (page,)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/x.html", "servers[0].error_page: expected 'CODE... [=RESPONSE] URI'"),
        ("200 /x", "servers[0].error_page: value 200 must be between 300 and 599"),
        ("404 =abc /x", "servers[0].error_page: invalid response code 'abc'"),
        ("404 =200 https://x.test/", "servers[0].error_page: a URL target is a redirect"),
        ("404 /a /b", "servers[0].error_page: expected one target"),
        ("404 @nope", "servers[0].error_page[0]: no named location '@nope' in this server"),
        ("404 /$nosuch", "servers[0].error_page: unknown variable $nosuch"),
    ],
)
def test_bad_error_pages_name_the_key(value: str, message: str) -> None:
    (found,) = issues(server(error_page=value))
    assert found.startswith(message), found


def test_a_uwsgi_location_cannot_upgrade() -> None:
    data = {
        "servers": [
            {
                "listen": 8080,
                "locations": [
                    {"path": "/ws", "proxy": "app", "params": {"Upgrade": "$http_upgrade"}}
                ],
            }
        ],
        "upstreams": {"app": {"servers": ["127.0.0.1:3031"]}},
    }
    assert issues(data) == [
        "servers[0].locations[0].params.Upgrade: a uwsgi upstream cannot switch protocols "
        "(WebSocket): uwsgi carries one request and its response; proxy this location with "
        "protocol: http"
    ]
    data["servers"][0]["locations"][0]["protocol"] = "http"
    build_config(data, check_paths=False)


def test_edge_t_reports_gzip_and_add_header_mistakes(tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "servers:\n"
        "  - listen: 127.0.0.1:8080\n"
        "    gzip_comp_level: 10\n"
        "    gzip_proxied: sometimes\n"
        "    add_header: {'Bad Name': x}\n"
        "    locations: [{path: /, return: 204, gzip_types: 'text'}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "edge", "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{config}: servers[0].gzip_comp_level: must be at most 9, got 10",
        f"{config}: servers[0].gzip_proxied: unknown gzip_proxied value 'sometimes'",
        f"{config}: servers[0].add_header.Bad Name: expected an HTTP header name, got 'Bad Name'",
        f"{config}: servers[0].locations[0].gzip_types: expected a MIME type like text/css or *, got 'text'",
    ]


def test_a_location_with_its_own_add_header_replaces_the_servers() -> None:
    inherited = Location("/", "prefix", ReturnHandler(204))
    own = Location("/own", "prefix", ReturnHandler(204), add_header=(AddHeader("X-Own", "1"),))
    parent = Server(add_header=(AddHeader("X-Server", "s"), AddHeader("X-All", "a", True)))
    inherited_rules = rules_for(parent, inherited)
    own_rules = rules_for(parent, own)
    assert inherited_rules is not None and own_rules is not None
    assert inherited_rules.fast_fields(200) == b"X-Server: s\r\nX-All: a\r\n"
    assert inherited_rules.fast_fields(404) == b"X-All: a\r\n"
    assert own_rules.fast_fields(200) == b"X-Own: 1\r\n"
    assert rules_for(Server(), inherited) is None  # nothing configured: nothing to do


GZIP = GzipRules(
    types=("text/html", "text/css"), min_length=100, comp_level=1, proxied=(), vary=True
)


class _Request:
    def __init__(self, *headers: tuple[bytes, bytes]) -> None:
        self.headers = list(headers)

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


@pytest.mark.parametrize(
    ("status", "headers", "request_headers", "expected"),
    [
        (200, [(b"Content-Type", b"text/css")], [(b"accept-encoding", b"gzip")], (True, True)),
        (206, [(b"Content-Type", b"text/css")], [(b"accept-encoding", b"gzip")], (False, False)),
        (304, [(b"Content-Type", b"text/css")], [(b"accept-encoding", b"gzip")], (False, False)),
        (
            200,
            [(b"Content-Type", b"text/css"), (b"Cache-Control", b"public, no-transform")],
            [(b"accept-encoding", b"gzip")],
            (False, False),
        ),
        (
            200,
            [(b"Content-Type", b"text/css"), (b"Content-Encoding", b"br")],
            [(b"accept-encoding", b"gzip")],
            (False, False),
        ),
        (
            200,
            [(b"Content-Type", b"text/css"), (b"Content-Length", b"99")],
            [(b"accept-encoding", b"gzip")],
            (False, False),
        ),
        (200, [(b"Content-Type", b"image/png")], [(b"accept-encoding", b"gzip")], (False, False)),
        (200, [(b"Content-Type", b"text/css")], [(b"accept-encoding", b"br")], (False, True)),
        (200, [(b"Content-Type", b"text/css")], [(b"accept-encoding", b"gzip;q=0")], (False, True)),
        (
            200,
            [(b"Content-Type", b"text/html; charset=utf-8")],
            [(b"accept-encoding", b"gzip"), (b"via", b"1.1 cdn")],
            (False, True),
        ),
        (404, [(b"Content-Type", b"text/html")], [(b"accept-encoding", b"*")], (True, True)),
    ],
)
def test_gzip_decides_as_nginx(
    status: int,
    headers: list[tuple[bytes, bytes]],
    request_headers: list[tuple[bytes, bytes]],
    expected: tuple[bool, bool],
) -> None:
    request: Any = _Request(*request_headers)
    assert compressible(GZIP, request, status, headers) == expected
