"""testssl.sh (Debian's ``testssl``) against an edge TLS listen and, with the same
certificate, against nginx with its default TLS settings: whatever testssl finds wrong
with edge (a "NOT ok", or a finding of MEDIUM severity or worse) it must find wrong with
nginx too.  What both fail is the certificate's (a test CA issues it without a CRL or an
OCSP URI) or the application's (no HSTS or security headers unless configured).

Both scans run at once and take about a minute here: protocols, cipher categories,
forward secrecy, server preferences, server defaults, headers and vulnerabilities
(``-p -s -f -P -S -h -U``); the client simulation and the per-cipher list (``-c``,
``-E``) would triple it and check nothing the others do not.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.certs import TestCa
from tests.support.edge import start_edge, write_config
from tests.support.nginx import Nginx, nginx_available
from tests.support.tls_clients import wait_tls_ready

pytestmark = pytest.mark.nginx

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh") or "/usr/bin/testssl"
SCAN = ["-p", "-s", "-f", "-P", "-S", "-h", "-U"]
BAD = frozenset(("MEDIUM", "HIGH", "CRITICAL"))


def _scan(address: tuple[str, int], ca: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            TESTSSL, "--quiet", "--color", "0", "--warnings", "off", "--ip", "one",
            "--add-ca", str(ca), "--jsonfile", str(out), *SCAN, f"{address[0]}:{address[1]}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def _problems(path: Path) -> dict[str, str]:
    """Finding id -> text, for every finding testssl calls NOT ok or rates MEDIUM+."""
    findings = json.loads(path.read_text())
    return {
        item["id"]: item["finding"]
        for item in findings
        if item.get("severity") in BAD or "NOT ok" in item.get("finding", "")
    }


def _finding(path: Path, name: str) -> str:
    return next(item["finding"] for item in json.loads(path.read_text()) if item["id"] == name)


@pytest.mark.timeout(420)
def test_testssl_finds_nothing_wrong_with_edge_that_nginx_defaults_pass(tmp_path: Path) -> None:
    if not nginx_available() or not Path(TESTSSL).exists():
        pytest.fail("testssl and nginx are needed (.ci/run installs them)", pytrace=False)
    ca = TestCa(tmp_path / "ca")
    pair = ca.issue("scan.test", alt_names=("IP:127.0.0.1",), days=90)
    config = write_config(
        tmp_path,
        'servers:\n  - listen: "127.0.0.1:0 ssl http2"\n'
        f"    ssl_certificate: {pair.certificate}\n    ssl_certificate_key: {pair.key}\n"
        "    locations: [{path: /, return: {status: 200, body: ok}}]\n",
    )
    edge = start_edge(["-c", str(config)], cwd=tmp_path, log_path=tmp_path / "edge.log")
    nginx = Nginx(
        tmp_path / "nginx",
        f"ssl_certificate {pair.certificate};\nssl_certificate_key {pair.key};\n"
        'location / { return 200 "ok"; }',
        listen_options="ssl http2",
    )
    try:
        nginx.start()
        (address,) = wait_tls_ready(edge, ca.certificate)
        scans = {
            "edge": (
                _scan(address, ca.certificate, tmp_path / "edge.json"),
                tmp_path / "edge.json",
            ),
            "nginx": (
                _scan(("127.0.0.1", nginx.port), ca.certificate, tmp_path / "nginx.json"),
                tmp_path / "nginx.json",
            ),
        }
        reports = {}
        for name, (process, _path) in scans.items():
            output, _ = process.communicate(timeout=400)
            reports[name] = output.decode("utf-8", "replace")
            (tmp_path / f"{name}.txt").write_text(reports[name])
    finally:
        nginx.stop()
        edge.stop()
    edge_json, nginx_json = scans["edge"][1], scans["nginx"][1]
    edge_problems, nginx_problems = _problems(edge_json), _problems(nginx_json)
    only_edge = {key: text for key, text in edge_problems.items() if key not in nginx_problems}
    assert not only_edge, f"testssl finds these on edge only: {only_edge}\n{reports['edge']}"
    # What edge does better than nginx 1.22's defaults, as testssl reports it.
    assert _finding(edge_json, "TLS1") == "not offered"
    assert _finding(edge_json, "TLS1_1") == "not offered"
    assert _finding(edge_json, "TLS1_3") == "offered with final"
    assert _finding(edge_json, "cipherlist_AVERAGE") == "not offered"  # no CBC
    assert _finding(edge_json, "cipherlist_3DES_IDEA") == "not offered"
    assert "h2" in _finding(edge_json, "ALPN_HTTP2")
    assert "not vulnerable" in _finding(edge_json, "secure_client_renego")
