"""edge.routing: nginx's server and location selection, and $uri normalization."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config.load import build_config
from edge.config.schema import Location, ReturnHandler, Server
from edge.routing import LocationTable, Router, normalize_host, normalize_uri


def table(*paths: str) -> LocationTable:
    """Locations answering with their index, so a match is easy to identify."""
    data = {
        "servers": [
            {
                "listen": 80,
                "locations": [
                    {"path": p, "return": {"status": 200, "body": str(i)}}
                    for i, p in enumerate(paths)
                ],
            }
        ]
    }
    return LocationTable(build_config(data).servers[0].locations)


def which(locations: LocationTable, uri: str) -> str | None:
    found = locations.match(uri)
    if found is None:
        return None
    assert isinstance(found.handler, ReturnHandler)
    return found.handler.body


# --- locations -----------------------------------------------------------------------------


def test_longest_prefix_wins_regardless_of_order() -> None:
    locations = table("/", "/static/", "/static/img/", "/st")
    assert which(locations, "/static/img/a.png") == "2"
    assert which(locations, "/static/a.css") == "1"
    assert which(locations, "/stuff") == "3"
    assert which(locations, "/other") == "0"


def test_exact_match_beats_everything() -> None:
    locations = table("/", "= /", "~ .*", "^~ /x")
    assert which(locations, "/") == "1"
    assert which(locations, "/index.html") == "2"


def test_exact_match_is_not_a_prefix() -> None:
    locations = table("= /api")
    assert which(locations, "/api") == "0"
    assert which(locations, "/api/") is None
    assert which(locations, "/apis") is None


def test_no_location_is_none() -> None:
    assert which(table("/static/"), "/") is None


def test_regex_overrides_a_plain_prefix() -> None:
    locations = table("/images/", "~ \\.(png|gif)$")
    assert which(locations, "/images/a.png") == "1"
    assert which(locations, "/images/a.txt") == "0"


def test_caret_tilde_prefix_stops_the_regex_search() -> None:
    locations = table("^~ /images/", "~ \\.png$")
    assert which(locations, "/images/a.png") == "0"
    assert which(locations, "/other/a.png") == "1"


def test_caret_tilde_only_counts_when_it_is_the_longest() -> None:
    # nginx remembers the longest prefix; a shorter ^~ does not stop regexes.
    locations = table("^~ /a/", "/a/b/", "~ \\.png$")
    assert which(locations, "/a/b/c.png") == "2"


def test_first_matching_regex_in_config_order() -> None:
    locations = table("~ \\.php$", "~ ^/admin", "~* \\.PNG$")
    assert which(locations, "/admin/x.php") == "0"
    assert which(locations, "/admin/x") == "1"
    assert which(locations, "/a.png") == "2"
    assert which(locations, "/a.PNG") == "2"


def test_case_sensitive_regex_and_prefix() -> None:
    locations = table("/Static/", "~ \\.png$")
    assert which(locations, "/static/x") is None
    assert which(locations, "/a.PNG") is None


def test_named_locations_are_only_reachable_by_name() -> None:
    locations = table("@app", "/")
    assert which(locations, "/@app") == "1"
    named = locations.named("@app")
    assert isinstance(named, Location) and named.match == "named"
    assert locations.named("@other") is None


# --- $uri normalization -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/", "/"),
        ("/a/b", "/a/b"),
        (b"/a/b/", "/a/b/"),
        ("//a///b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/../c", "/a/c"),
        ("/a/.", "/a/"),
        ("/..a/b..", "/..a/b.."),
        ("/%2e%2e%2fetc", None),  # decoded "/../etc" climbs above the root
        ("/static/%2E%2E/%2e%2e/etc/passwd", None),
        ("/static/%2e%2e/app.py", "/app.py"),
        ("/a%2fb", "/a/b"),
        ("/caf%C3%A9", "/café"),
        ("/%ff", "/\udcff"),  # not UTF-8: kept as the client's byte
        ("/%41%42", "/AB"),
        ("/..", None),
        ("/a/../..", None),
        ("/a%00.txt", None),
        ("/a%zz", None),
        ("/a%4", None),
        ("a/b", None),
        ("", None),
        ("*", None),
    ],
)
def test_normalize_uri(raw: bytes | str, expected: str | None) -> None:
    assert normalize_uri(raw) == expected


def test_normalized_uri_round_trips_to_client_bytes() -> None:
    normalized = normalize_uri(b"/%ff%fe.txt")
    assert normalized is not None
    assert normalized.encode("utf-8", "surrogateescape") == b"/\xff\xfe.txt"


# --- servers ---------------------------------------------------------------------------------


def servers(*blocks: dict[str, Any]) -> Router:
    data = {
        "servers": [
            {**block, "locations": [{"path": "/", "return": {"status": 200, "body": str(i)}}]}
            for i, block in enumerate(blocks)
        ]
    }
    return Router(build_config(data))


def server_id(server: Server) -> str:
    handler = server.locations[0].handler
    assert isinstance(handler, ReturnHandler) and handler.body is not None
    return handler.body


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"Example.COM:8080", "example.com"),
        ("example.com.", "example.com"),
        ("[::1]:80", "[::1]"),
        ("[::1]", "[::1]"),
        (None, ""),
        ("  a.b  ", "a.b"),
    ],
)
def test_normalize_host(host: bytes | str | None, expected: str) -> None:
    assert normalize_host(host) == expected


def test_default_server_is_the_first_unless_marked() -> None:
    router = servers({"listen": 80, "server_name": "a.com"}, {"listen": 80, "server_name": "b.com"})
    assert server_id(router.server_for("127.0.0.1", 80, b"unknown.org")) == "0"
    assert server_id(router.server_for("127.0.0.1", 80, None)) == "0"
    router = servers(
        {"listen": 80, "server_name": "a.com"},
        {"listen": 80, "server_name": "b.com", "default_server": True},
    )
    assert server_id(router.server_for("127.0.0.1", 80, b"unknown.org")) == "1"


def test_server_name_matching_order() -> None:
    router = servers(
        {"listen": 80, "server_name": "default.test"},
        {"listen": 80, "server_name": ["~^api\\d+\\."]},
        {"listen": 80, "server_name": ["www.*"]},
        {"listen": 80, "server_name": ["*.example.com"]},
        {"listen": 80, "server_name": ["*.deep.example.com"]},
        {"listen": 80, "server_name": ["www.example.com", "Mixed.Case"]},
        {"listen": 80, "server_name": [".example.org"]},
    )

    def pick(host: str) -> str:
        return server_id(router.server_for("10.0.0.1", 80, host))

    assert pick("www.example.com") == "5"  # exact beats both wildcards
    assert pick("mixed.case") == "5"
    assert pick("a.example.com:80") == "3"
    assert pick("x.deep.example.com") == "4"  # longest leading wildcard
    assert pick("example.com") == "0"  # "*.example.com" needs a label before it
    assert pick("www.example.net") == "2"  # trailing wildcard
    assert pick("api12.example.com") == "3"  # wildcards before regexes
    assert pick("api12.test") == "1"
    assert pick("example.org") == "6"  # ".example.org" is the name itself...
    assert pick("a.b.example.org") == "6"  # ...and every subdomain
    assert pick("nothing.test") == "0"


def test_listen_address_picks_candidates_before_names() -> None:
    router = servers(
        {"listen": 8000, "server_name": "a.com"},
        {"listen": "127.0.0.1:8000", "server_name": "b.com"},
        {"listen": 8080, "server_name": "a.com"},
        {"listen": "[::]:8000", "server_name": "c.com"},
    )
    # A connection on 127.0.0.1:8000 only sees the server bound to that address.
    assert server_id(router.server_for("127.0.0.1", 8000, "a.com")) == "1"
    # Another local address on the same port falls to the wildcard listen.
    assert server_id(router.server_for("10.1.2.3", 8000, "b.com")) == "0"
    assert server_id(router.server_for("10.1.2.3", 8080, "a.com")) == "2"
    assert server_id(router.server_for("::1", 8000, "a.com")) == "3"


def test_listen_by_host_name_falls_back_to_port() -> None:
    router = servers({"listen": "localhost:9000"}, {"listen": 9001})
    assert server_id(router.server_for("127.0.0.1", 9000, None)) == "0"
    assert server_id(router.server_for("127.0.0.1", 9001, None)) == "1"


def test_route_returns_server_and_location() -> None:
    data = {
        "upstreams": {"app": {"servers": ["127.0.0.1:3031"]}},
        "servers": [
            {
                "listen": 8000,
                "locations": [
                    {"path": "/static/", "alias": "/srv/static/"},
                    {"path": "/", "proxy": "app"},
                ],
            },
            {"listen": 8080, "locations": [{"path": "/", "root": "/srv/dist"}]},
        ],
    }
    config = build_config(data, check_paths=False)
    router = Router(config)
    server, location = router.route("0.0.0.0", 8000, "x", "/static/app.css")
    assert server is config.servers[0] and location is config.servers[0].locations[0]
    server, location = router.route("0.0.0.0", 8080, "x", "/static/app.css")
    assert server is config.servers[1] and location is config.servers[1].locations[0]
    assert router.locations(config.servers[0]).match("/api") is config.servers[0].locations[1]


def test_router_needs_a_server() -> None:
    with pytest.raises(ValueError):
        Router([])
