"""What the image and the one-host stack say about each role, read from their files.

The deployment files for other orchestrators (deploy/stack.yaml,
deploy/kubernetes/) must agree with these: the same ports, health endpoints,
user, roles and drain timeouts.  Each fact is parsed from the file that
defines it (Dockerfile, docker/entrypoint.sh, deploy/appserver.ini,
deploy/edge.yaml, compose.yaml), so a change there fails the agreement tests
instead of leaving the manifests behind.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from tests.support.processes import REPO

DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
APPSERVER_INI = REPO / "deploy" / "appserver.ini"
EDGE_YAML = REPO / "deploy" / "edge.yaml"
COMPOSE_FILE = REPO / "compose.yaml"


@dataclass(frozen=True)
class ImageRoles:
    uid: int
    gid: int
    exposed: frozenset[int]
    roles: frozenset[str]  # the first argument the entrypoint understands
    default_probe_ports: dict[str, int]  # role -> the port its healthcheck connects to
    appserver_port: int  # deploy/appserver.ini socket
    worker_reload_mercy: int  # seconds the appserver gives requests on SIGTERM
    edge_ports: frozenset[int]  # deploy/edge.yaml listens
    appserver_probe: list[str]  # compose.yaml's appserver healthcheck, as argv
    edge_probe_url: str  # compose.yaml's edge HEALTHCHECK_URL


@cache
def image_roles() -> ImageRoles:
    dockerfile = DOCKERFILE.read_text()
    users = re.findall(r"(?m)^USER\s+(\d+):(\d+)\s*$", dockerfile)
    assert len(users) == 1, f"Dockerfile: expected one numeric USER line, found {users}"
    exposed = re.search(r"(?m)^EXPOSE\s+([\d\s]+)$", dockerfile)
    assert exposed, "Dockerfile: no EXPOSE line"

    entrypoint = ENTRYPOINT.read_text()
    # The last `case $role in` is the dispatch (the first is the healthcheck's).
    dispatch = entrypoint[entrypoint.rindex("case $role in") :]
    roles = {
        name.strip()
        for pattern in re.findall(r"(?m)^    ([a-z][a-z |]*)\)", dispatch)
        for name in pattern.split("|")
    }
    probes = {
        role: int(port)
        for role, port in re.findall(r"(?m)^\s+(\w+)\) url=tcp://127\.0\.0\.1:(\d+) ;;", entrypoint)
    }

    ini = configparser.ConfigParser(inline_comment_prefixes=(";",))
    ini.read_string(APPSERVER_INI.read_text())
    socket = ini["uwsgi"]["socket"]
    edge = yaml.safe_load(EDGE_YAML.read_text())
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return ImageRoles(
        uid=int(users[0][0]),
        gid=int(users[0][1]),
        exposed=frozenset(int(port) for port in exposed.group(1).split()),
        roles=frozenset(roles),
        default_probe_ports=probes,
        appserver_port=int(socket.rpartition(":")[2]),
        worker_reload_mercy=int(ini["uwsgi"]["worker-reload-mercy"]),
        # "8443 ssl http2": the port is the first word.
        edge_ports=frozenset(int(str(server["listen"]).split()[0]) for server in edge["servers"]),
        appserver_probe=compose["appserver"]["healthcheck"]["test"][1:],
        edge_probe_url=compose["edge"]["environment"]["HEALTHCHECK_URL"],
    )


MONITORING_PORT = 9145  # deploy/edge.yaml's metrics / stub_status / status server


def edge_config_for(upstream_address: str) -> dict[str, Any]:
    """deploy/edge.yaml as another orchestrator must run it: appserver at
    ``upstream_address``, without the one-host gunicorn comparison block, and
    without the TLS server (there the platform's ingress or load balancer holds
    the certificate; docs/deploy.md) and without the :9145 monitoring server
    (compose's ``monitoring`` profile scrapes it; docs/monitoring.md)."""
    config: dict[str, Any] = yaml.safe_load(EDGE_YAML.read_text())
    del config["upstreams"]["gunicorn"]
    config["upstreams"]["appserver"]["servers"][0]["address"] = upstream_address
    config["servers"] = [
        server
        for server in config["servers"]
        if not any(location.get("proxy") == "gunicorn" for location in server["locations"])
        and "ssl" not in str(server["listen"]).split()
        and str(server["listen"]) != str(MONITORING_PORT)
    ]
    return config
