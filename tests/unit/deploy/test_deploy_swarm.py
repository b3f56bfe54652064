"""deploy/stack.yaml and deploy/swarm/ held to the image and the compose stack, without Docker.

tests/integration/topology/swarm/test_swarm_stack.py deploys the stack for real;
these checks say which line is wrong when a fact it relies on changes, and
run deploy/swarm/run.sh (the stack's command wrapper) with a stand-in
entrypoint.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config.load import load_config
from edge.master import FAST_STOP_GRACE
from edge.server import GRACEFUL_TIMEOUT
from tests.support.image_roles import edge_config_for, image_roles
from tests.support.processes import REPO

STACK_FILE = REPO / "deploy" / "stack.yaml"
RUN_SH = REPO / "deploy" / "swarm" / "run.sh"
SWARM_EDGE = REPO / "deploy" / "swarm" / "edge.yaml"


def _defaults(text: str) -> str:
    """``${NAME:-default}`` -> default, as `docker stack deploy` reads it with NAME unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    return yaml.safe_load(_defaults(STACK_FILE.read_text()))  # type: ignore[no-any-return]


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return int(match.group(1))


def test_the_services_and_their_roles(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == {"postgres", "migrate", "appserver", "edge"}
    roles = image_roles().roles
    for name in ("migrate", "appserver", "edge"):
        command = services[name]["command"]
        assert command[0] == "/etc/wsgistack/run.sh", name
        role = next(arg for arg in command[1:] if not arg.startswith("--"))
        assert role in roles, f"{name}: {role!r} is not a role of the image {roles}"
        configs = {c["source"]: c for c in services[name]["configs"]}
        assert configs["run_sh"]["target"] == "/etc/wsgistack/run.sh"
        assert configs["run_sh"]["mode"] == 0o555
    assert services["migrate"]["command"][-3:] == ["manage", "migrate", "--noinput"]
    assert "--wait-for-migrations" in services["appserver"]["command"]
    assert "migrate" not in services["appserver"]["command"][2:]


def test_every_service_has_limits_and_no_virtual_ip(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        resources = service["deploy"]["resources"]
        assert {"cpus", "memory"} <= set(resources["limits"]), name
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name


def test_appserver_rolls_start_first_on_the_compose_health_check(stack: dict[str, Any]) -> None:
    facts = image_roles()
    appserver = stack["services"]["appserver"]
    update = appserver["deploy"]["update_config"]
    assert (update["order"], update["parallelism"], update["failure_action"]) == (
        "start-first", 1, "rollback",
    )  # fmt: skip
    assert appserver["deploy"]["rollback_config"]["order"] == "start-first"
    assert appserver["healthcheck"]["test"] == ["CMD", *facts.appserver_probe]
    assert appserver["stop_signal"] == "SIGTERM"  # the appserver's graceful stop
    assert _seconds(appserver["stop_grace_period"]) > facts.worker_reload_mercy
    configs = {c["source"]: c["target"] for c in appserver["configs"]}
    assert configs["appserver_ini"] == "/etc/wsgistack/appserver.ini"
    assert appserver["command"][-2:] == ["--ini", "/etc/wsgistack/appserver.ini"]
    assert stack["configs"]["appserver_ini"]["file"] == "./appserver.ini"


def test_edge_config_ports_probe_and_signals(stack: dict[str, Any], tmp_path: Path) -> None:
    facts = image_roles()
    edge = stack["services"]["edge"]
    assert stack["configs"]["edge_yaml"]["file"] == "./swarm/edge.yaml"
    config = yaml.safe_load(SWARM_EDGE.read_text())
    assert config == edge_config_for("tasks.appserver:3031")
    load_config(SWARM_EDGE, check_paths=False)
    configs = {c["source"]: c["target"] for c in edge["configs"]}
    assert edge["command"][-2:] == ["-c", configs["edge_yaml"]]

    listens = {int(server["listen"]) for server in config["servers"]}
    assert {p["target"] for p in edge["ports"]} == listens <= facts.exposed
    assert {p["mode"] for p in edge["ports"]} == {"host"}
    assert edge["environment"]["HEALTHCHECK_URL"] == facts.edge_probe_url
    # nginx's signals: SIGQUIT drains, within the grace period.
    assert edge["stop_signal"] == "SIGQUIT"
    assert _seconds(edge["stop_grace_period"]) >= GRACEFUL_TIMEOUT + FAST_STOP_GRACE
    # Host-mode ports: a second task on the node could not bind them.
    assert edge["deploy"]["mode"] == "global"
    assert edge["deploy"]["update_config"]["order"] == "stop-first"


def test_secrets_are_external_and_reach_each_service_as_files(stack: dict[str, Any]) -> None:
    text = STACK_FILE.read_text()
    assert "--resolve-image never" in text
    assert not re.search(r"(?m)^\s+(DJANGO_SECRET_KEY|POSTGRES_PASSWORD|DATABASE_PASSWORD):", text)
    for secret in stack["secrets"].values():
        assert secret["external"] is True
    needs = {
        "appserver": {"DJANGO_SECRET_KEY_FILE", "DATABASE_PASSWORD_FILE"},
        "migrate": {"DJANGO_SECRET_KEY_FILE", "DATABASE_PASSWORD_FILE"},
        "postgres": {"POSTGRES_PASSWORD_FILE"},
    }
    for name, variables in needs.items():
        service = stack["services"][name]
        mounted = {f"/run/secrets/{secret}" for secret in service["secrets"]}
        for variable in variables:
            assert service["environment"][variable] in mounted, (name, variable)
        if name != "postgres":  # no password in the URL: the settings read the file
            url = service["environment"]["DATABASE_URL"]
            assert re.fullmatch(r"postgres://[^:@]+@postgres:5432/\w+(\?.*)?", url), url


def test_the_database_stays_on_its_node_and_stops_fast(stack: dict[str, Any]) -> None:
    postgres = stack["services"]["postgres"]
    assert postgres["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert "WSGISTACK_DB_CONSTRAINT" in STACK_FILE.read_text()
    assert postgres["deploy"]["update_config"]["order"] == "stop-first"
    assert postgres["stop_signal"] == "SIGINT"
    assert postgres["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    migrate = stack["services"]["migrate"]["deploy"]["restart_policy"]
    assert migrate["condition"] == "on-failure"


# --- run.sh ------------------------------------------------------------------------


@pytest.fixture
def fake_entrypoint(tmp_path: Path) -> Path:
    """Prints its arguments and the key; `manage migrate --check` fails while $tmp/pending exists."""
    script = tmp_path / "entrypoint.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2 $3" = "manage migrate --check" ] && [ -e {tmp_path}/pending ]; then exit 1; fi\n'
        'echo "args: $*"\n'
        'echo "key: ${DJANGO_SECRET_KEY:-unset} file: ${DJANGO_SECRET_KEY_FILE:-unset}"\n'
    )
    script.chmod(0o755)
    return script


def _run_sh(
    entrypoint: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "WSGISTACK_ENTRYPOINT": str(entrypoint)}
    return subprocess.run(
        ["sh", str(RUN_SH), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_run_sh_exports_the_key_from_its_secret_file(fake_entrypoint: Path, tmp_path: Path) -> None:
    secret = tmp_path / "django_secret_key"
    secret.write_text("s3cret-value\n")
    result = _run_sh(
        fake_entrypoint, "--wait-for-migrations", "appserver", "--ini", "x.ini",
        env={"DJANGO_SECRET_KEY_FILE": str(secret)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "args: appserver --ini x.ini",
        "key: s3cret-value file: unset",
    ]
    assert "run.sh: migrated schema: ok" in result.stderr


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("missing", ["edge"], "DJANGO_SECRET_KEY_FILE: cannot read"),
        ("empty", ["edge"], "is empty"),
        ("none", ["--bogus", "edge"], "unknown option --bogus"),
        ("none", [], "usage: run.sh"),
    ],
)
def test_run_sh_says_what_is_wrong(
    fake_entrypoint: Path, tmp_path: Path, setup: str, args: list[str], message: str
) -> None:
    env = {}
    if setup != "none":
        path = tmp_path / "key"
        if setup == "empty":
            path.write_text("")
        env["DJANGO_SECRET_KEY_FILE"] = str(path)
    result = _run_sh(fake_entrypoint, *args, env=env)
    assert result.returncode == 1
    assert message in result.stderr and result.stdout == ""


def test_run_sh_gives_up_waiting_after_its_bound(fake_entrypoint: Path, tmp_path: Path) -> None:
    (tmp_path / "pending").touch()
    result = _run_sh(
        fake_entrypoint, "--wait-for-migrations", "appserver", env={"WAIT_SECONDS": "0"}
    )
    assert result.returncode == 1
    assert "still no migrated schema after 0s" in result.stderr
    assert "args:" not in result.stdout
