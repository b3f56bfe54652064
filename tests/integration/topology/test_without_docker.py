"""The README's "Without Docker" commands, run as written, end in a styled page.

The code block of that README section is read and run line by line, in a
copy of the checkout's sampleapp/ and deploy/ (so the developer's database and
static files are untouched), with ``.venv/bin/`` meaning this interpreter's
bin directory, the install line left out (this venv has it), and the three
loopback ports moved to free ones (a developer may be using 8000).  The
environment is a new user's: no DJANGO_*, DATABASE_URL, SQLITE_PATH or
STATIC_ROOT.  Then the home page and its CSS, JS and logo are fetched through
edge.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO, ServerProcess
from tests.support.topology import fetch, free_port, wait_until_serving

pytestmark = pytest.mark.timeout(180)

README = REPO / "README.md"
PORTS = ("127.0.0.1:3031", "127.0.0.1:8000", "127.0.0.1:8080")


def readme_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Without Docker") :]
    section = section[: section.index("\n## ", 1)]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the README's Without Docker section has no sh code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_commands_serve_a_styled_page_through_edge(tmp_path: Path) -> None:
    install, prepare, appserver, edge = readme_commands()
    assert install.startswith("python3 -m venv .venv") and "'.[django]'" in install
    assert (
        "collectstatic" in prepare and appserver.endswith("&") and edge.startswith(".venv/bin/edge")
    )

    for directory in ("sampleapp", "deploy"):
        shutil.copytree(
            REPO / directory,
            tmp_path / directory,
            ignore=shutil.ignore_patterns(
                "__pycache__", "staticfiles", "db.sqlite3*", ".dev-secret-key*"
            ),
        )
    moved = {port: f"127.0.0.1:{free_port()}" for port in PORTS}
    config = tmp_path / "deploy" / "local" / "edge.yaml"
    text = config.read_text()
    for old, new in moved.items():
        text = text.replace(old, new)
    config.write_text(text)

    bindir = Path(sys.executable).parent

    def as_run_here(command: str) -> str:
        command = command.replace(".venv/bin/", f"{bindir}/").removesuffix("&").strip()
        for old, new in moved.items():
            command = command.replace(old, new)
        return command

    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("DJANGO_")
        and name not in ("DATABASE_URL", "SQLITE_PATH", "STATIC_ROOT", "STATIC_URL")
    }
    result = subprocess.run(
        ["sh", "-ec", as_run_here(prepare)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{prepare}\n{result.stdout}{result.stderr}"
    assert (tmp_path / "sampleapp" / "staticfiles" / "shop" / "css" / "site.css").is_file()

    servers = [
        ServerProcess(
            ["sh", "-c", f"exec {as_run_here(command)}"],
            cwd=tmp_path,
            log_path=tmp_path / f"{name}.log",
            env=env,
        )
        for name, command in (("appserver", appserver), ("edge", edge))
    ]
    try:
        for server in servers:
            server.start()
        servers[0].wait_ready(workers=2, timeout=60)
        django_port = int(moved["127.0.0.1:8000"].rpartition(":")[2])
        spa_port = int(moved["127.0.0.1:8080"].rpartition(":")[2])
        wait_until_serving({"django": django_port, "spa": spa_port}, timeout=60)

        page = fetch(django_port, "/")
        assert page.status == 200 and page.header("x-served-by"), page.body[:300]
        assets = re.findall(rb'(?:href|src)="(/static/[^"]+)"', page.body)
        kinds = {Path(a.decode()).suffix for a in assets}
        assert {".css", ".js", ".svg"} <= kinds, assets
        source = REPO / "sampleapp" / "shop" / "static"
        for asset in assets:
            path = asset.decode()
            response = fetch(django_port, path)
            assert response.status == 200, f"{path}: {response.status}\n{servers[1].log()}"
            assert response.body == (source / path.removeprefix("/static/")).read_bytes()
            # Served by edge from disk, not by Django (which has no static view).
            assert response.header("x-served-by") is None and response.header("etag")
        spa = fetch(spa_port, "/app/")
        assert spa.status == 200 and b'<base href="/app/">' in spa.body
    finally:
        for server in reversed(servers):
            server.stop()
    assert "DJANGO_SECRET_KEY is not set" in servers[0].log()  # said so, as the README says
