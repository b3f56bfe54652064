"""The compose stack over HTTPS: edge's :8443 (HTTP/2 + TLS) with the development
certificate its entrypoint made, and the sample app with ``DJANGO_HTTPS=1`` behind it.

This module runs a stack of its own (``DJANGO_HTTPS=1`` makes the site HTTPS-only, which
the plain-HTTP tests of the shared stack cannot use), on a fixed free HTTPS port so that
Django's redirect target and CSRF trusted origins can name it.  Headless Chromium (Debian's
``chromium``), with the development CA added to its NSS store, loads the home page; the
edge's access log must show every asset answered 200 over HTTP/2, and the screenshot is
kept in ``build/topology-logs/``.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.nginx import free_port
from tests.support.processes import REPO
from tests.support.tls_clients import curl
from tests.support.topology import DJANGO, Topology, TopologyError, topology_from_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CERTUTIL = shutil.which("certutil") or "/usr/bin/certutil"
SCREENSHOTS = REPO / "build" / "topology-logs"
ASSETS = (
    "/static/shop/css/site.css",
    "/static/shop/js/site.js",
    "/static/shop/img/logo.svg",
)


@pytest.fixture(scope="module")
def https_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topology = topology_from_env(tmp_path_factory.mktemp("https-topology"))
    port = free_port()
    origin = f"127.0.0.1:{port}"
    topology.env.update(
        DJANGO_HTTPS="1",
        DJANGO_SECURE_SSL_HOST=origin,
        DJANGO_CSRF_TRUSTED_ORIGINS=f"https://{origin},https://localhost:{port}",
        WSGISTACK_PORT_HTTPS=str(port),
    )
    try:
        topology.up()
    except TopologyError as exc:
        topology.down()
        pytest.fail(f"the HTTPS stack did not come up:\n{exc}", pytrace=False)
    try:
        yield topology
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / "https-stack.log").write_text(topology.logs())
        topology.down()


@pytest.fixture(scope="module")
def dev_ca(https_stack: Topology, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dev-ca") / "dev-ca.crt"
    pem = https_stack.dev_ca()
    assert b"-----BEGIN CERTIFICATE-----" in pem, pem
    path.write_bytes(pem)
    return path


def test_chromium_loads_the_site_over_http2(
    https_stack: Topology, dev_ca: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for command in (
        [CERTUTIL, "-d", f"sql:{nssdb}", "-N", "--empty-password"],
        [
            CERTUTIL,
            "-d",
            f"sql:{nssdb}",
            "-A",
            "-t",
            "C,,",
            "-n",
            "wsgistack dev",
            "-i",
            str(dev_ca),
        ],
    ):
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    screenshot = tmp_path / "https-home.png"
    url = f"https://127.0.0.1:{https_stack.https_port}/"
    before = len(https_stack.edge_log())
    result = subprocess.run(
        [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--no-first-run", "--disable-extensions", "--window-size=1200,900",
            f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={screenshot}",
            "--virtual-time-budget=5000", url,
        ],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert screenshot.exists(), f"chromium made no screenshot:\n{result.stdout}{result.stderr}"
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, len(png)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, SCREENSHOTS / "https-home.png")
    lines = [
        line for line in https_stack.edge_log()[before:].splitlines() if "HeadlessChrome" in line
    ]
    served = {}
    for line in lines:
        match = re.search(r'"GET (\S+) (HTTP/[\d.]+)" (\d{3})', line)
        if match:
            served[match.group(1)] = (match.group(2), int(match.group(3)))
    assert served.get("/") == ("HTTP/2.0", 200), lines
    for asset in ASSETS:
        assert served.get(asset) == ("HTTP/2.0", 200), (asset, lines)
    assert all(version == "HTTP/2.0" and status == 200 for version, status in served.values()), (
        served
    )


def test_django_https_behind_edge(https_stack: Topology, dev_ca: Path) -> None:
    port = https_stack.https_port
    base = f"https://127.0.0.1:{port}"
    # Plain HTTP is redirected to the HTTPS listener.
    plain = http.client.HTTPConnection("127.0.0.1", https_stack.ports[DJANGO], timeout=10)
    try:
        plain.request("GET", "/hello?x=1", headers={"Host": "127.0.0.1"})
        response = plain.getresponse()
        response.read()
    finally:
        plain.close()
    assert response.status == 301
    assert response.getheader("Location") == f"{base}/hello?x=1"
    # Over HTTPS the page is served, on HTTP/2; the CSRF cookie is Secure.
    login = curl(f"{base}/admin/login/", dev_ca)
    assert (login.status, login.version) == (200, "2")
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("csrftoken=") and "Secure" in cookie, cookie
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', login.body)
    assert token is not None
    csrf_cookie = cookie.split(";")[0]
    form = f"csrfmiddlewaretoken={token.group(1).decode()}&username=nobody&password=wrong"
    args = ("--data", form, "-H", f"Cookie: {csrf_cookie}", "-H", f"Referer: {base}/admin/login/")
    # From the site's own origin, the POST passes the CSRF check (a failed login: 200).
    same = curl(f"{base}/admin/login/", dev_ca, *args, "-H", f"Origin: {base}")
    assert same.status == 200 and b"Please enter the correct username" in same.body
    # From another origin, Django refuses it.
    other = curl(f"{base}/admin/login/", dev_ca, *args, "-H", "Origin: https://evil.test")
    assert other.status == 403
