"""The ways servers and operators start the project, each in a fresh process.

uWSGI-style ``chdir`` + ``module``/``wsgi-file``, gunicorn's ``--chdir``, the
image's ``sampleapp.wsgi:application`` from the repository root, and
``manage.py`` for migrate, collectstatic and the deployment checklist.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
PROJECT_DIR = REPO_ROOT / "sampleapp"
MANAGE_PY = PROJECT_DIR / "manage.py"

# Load the WSGI callable the way a server would, make one request, report.
DRIVER = r"""
import importlib, importlib.util, json, sys, wsgiref.util

how, target = sys.argv[1], sys.argv[2]
if how == "module":  # module=pkg.mod:callable, after the server's chdir
    module_name, _, attribute = target.partition(":")
    application = getattr(importlib.import_module(module_name), attribute or "application")
else:  # wsgi-file=path, loaded by path as uWSGI does
    spec = importlib.util.spec_from_file_location("uwsgi_file_wsgi", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    application = module.application

environ = {}
wsgiref.util.setup_testing_defaults(environ)
environ["PATH_INFO"] = "/hello"
seen = {}

def start_response(status, headers, exc_info=None):
    seen.update(status=status, headers=dict(headers))

result = application(environ, start_response)
try:
    body = b"".join(result)
finally:
    result.close()

from django.apps import apps
from django.conf import settings

print(json.dumps({
    "status": seen["status"],
    "body": body.decode(),
    "served_by": seen["headers"].get("X-Served-By", ""),
    "settings": settings.SETTINGS_MODULE,
    "shop": apps.get_app_config("shop").name,
}))
"""


def run(
    argv: list[str], *, cwd: Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.mark.parametrize(
    ("cwd", "how", "target", "settings_module"),
    [
        # uWSGI chdir=sampleapp + module=..., or gunicorn --chdir sampleapp
        ("project", "module", "sampleapp.wsgi:application", "sampleapp.settings"),
        # uWSGI chdir=sampleapp + wsgi-file=sampleapp/wsgi.py
        ("project", "file", "sampleapp/wsgi.py", "sampleapp.settings"),
        # the image's gunicorn default from /app, and the fully qualified name
        ("repo", "module", "sampleapp.wsgi:application", "sampleapp.sampleapp.settings"),
        ("repo", "module", "sampleapp.sampleapp.wsgi:application", "sampleapp.sampleapp.settings"),
        # wsgi-file without chdir, relative to the repository or from anywhere
        ("repo", "file", "sampleapp/wsgi.py", "sampleapp.settings"),
        ("elsewhere", "file", str(PROJECT_DIR / "sampleapp" / "wsgi.py"), "sampleapp.settings"),
    ],
)
def test_wsgi_application_loads_every_way_a_server_asks(
    tmp_path: Path,
    project_env: dict[str, str],
    cwd: str,
    how: str,
    target: str,
    settings_module: str,
) -> None:
    directory = {"project": PROJECT_DIR, "repo": REPO_ROOT, "elsewhere": tmp_path}[cwd]
    # "-c" puts the working directory first on sys.path, as servers do for chdir.
    done = run([sys.executable, "-c", DRIVER, how, target], cwd=directory, env=project_env)
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["status"] == "200 OK"
    assert report["body"] == "Hello, World!"
    assert report["served_by"].rpartition("/")[2].isdigit()
    assert report["settings"] == settings_module
    assert report["shop"] == settings_module.replace("sampleapp.settings", "shop")


def _item_names(database: Path) -> list[str]:
    db = sqlite3.connect(database)
    try:
        return [row[0] for row in db.execute("SELECT name FROM shop_item ORDER BY id")]
    finally:
        db.close()


def test_manage_py_migrate_seeds_and_collectstatic_gathers(
    migrated_project: tuple[Path, dict[str, str]],
) -> None:
    tmp, migrated = migrated_project
    names = _item_names(tmp / "db.sqlite3")
    assert names[0] == "Teapot"
    assert len(names) == 5

    done = run(
        [sys.executable, str(MANAGE_PY), "collectstatic", "--noinput"], cwd=REPO_ROOT, env=migrated
    )
    assert "static files copied" in done.stdout
    for relative in ("shop/css/site.css", "shop/img/logo.svg", "admin/css/base.css"):
        assert (tmp / "static" / relative).is_file(), relative


def test_seed_migration_reverses_and_reapplies(
    migrated_project: tuple[Path, dict[str, str]],
) -> None:
    tmp, migrated = migrated_project
    manage = [sys.executable, str(MANAGE_PY), "migrate", "shop"]
    run([*manage, "0001"], cwd=REPO_ROOT, env=migrated)
    assert _item_names(tmp / "db.sqlite3") == []
    run(manage, cwd=REPO_ROOT, env=migrated)
    assert len(_item_names(tmp / "db.sqlite3")) == 5


def test_deploy_checklist_passes_when_configured_for_https(
    project_env: dict[str, str],
) -> None:
    env = {
        **project_env,
        "DJANGO_SECRET_KEY": "x7!Qm2#vL9pZr4$Tk8@Wn3^Hs6&Jd1*Fb5(Yc0)Ge-Ua_Io=Pe+Ry",
        "DJANGO_HTTPS": "1",
        "DJANGO_HSTS_SECONDS": "31536000",
        "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1",
        "DJANGO_HSTS_PRELOAD": "1",
    }
    argv = [sys.executable, str(MANAGE_PY), "check", "--deploy", "--fail-level", "WARNING"]
    done = run(argv, cwd=REPO_ROOT, env=env)
    assert "no issues" in done.stdout


def test_missing_secret_key_warns_loudly_and_shares_one_dev_key(
    tmp_path: Path, project_env: dict[str, str]
) -> None:
    # A copy of the project, so the dev key file is not written into the checkout.
    copy = tmp_path / "project"
    shutil.copytree(
        PROJECT_DIR,
        copy,
        ignore=shutil.ignore_patterns(
            "staticfiles", "db.sqlite3*", ".dev-secret-key*", "__pycache__"
        ),
    )
    env = {key: value for key, value in project_env.items() if key != "DJANGO_SECRET_KEY"}
    deploy = run([sys.executable, "manage.py", "check", "--deploy"], cwd=copy, env=env)
    assert "WARNING: DJANGO_SECRET_KEY is not set" in deploy.stderr
    assert "security.W009" in deploy.stderr + deploy.stdout

    show_key = "from django.conf import settings; print(settings.SECRET_KEY)"
    shell = [sys.executable, "manage.py", "shell", "--no-imports", "-c", show_key]
    key = run(shell, cwd=copy, env=env).stdout.strip()
    # The second process read the key the first one wrote (workers agree).
    assert key == (copy / ".dev-secret-key").read_text().strip()
    assert key.startswith("django-insecure-")


def test_bad_environment_fails_with_the_variable_named(project_env: dict[str, str]) -> None:
    env = {**project_env, "DJANGO_DEBUG": "maybe"}
    done = run([sys.executable, str(MANAGE_PY), "check"], cwd=REPO_ROOT, env=env, check=False)
    assert done.returncode != 0
    assert (
        "DJANGO_DEBUG: expected one of 1/0, true/false, yes/no, on/off; got 'maybe'" in done.stderr
    )


def test_gunicorn_with_chdir_serves_the_index(
    tmp_path: Path, migrated_project: tuple[Path, dict[str, str]]
) -> None:
    _, migrated = migrated_project
    server = ServerProcess(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--chdir",
            "sampleapp",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--no-control-socket",
            "sampleapp.wsgi",
        ],
        cwd=REPO_ROOT,
        log_path=tmp_path / "gunicorn.log",
        env=migrated,
    ).start()
    try:
        port = int(server.wait_for_log(r"Listening at: http://127\.0\.0\.1:(\d+)").group(1))
        server.wait_for_log(r"Booting worker with pid: (\d+)")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            body = response.read().decode()
            served_by = response.headers["X-Served-By"]
        assert response.status == 200
        assert "/static/shop/css/site.css" in body
        assert "Teapot" in body
        assert served_by.rpartition("/")[2] != str(server.pid)  # a worker, not the master
    finally:
        server.stop()
