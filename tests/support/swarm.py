"""deploy/stack.yaml on a one-node Docker Swarm, for the tests.

``swarm_mode()`` is the guard: it makes this node a single-node swarm
(``docker swarm init``) when it is not in one, and in its ``finally`` leaves
it again (``docker swarm leave --force``), so the node ends as it was found
whatever the test did.  A node that is already a manager is used as it is and
left in its swarm; one that is a worker, or in a half-joined state, is a
failure: a stack cannot be deployed from it, and the test must not change it.

``SwarmStack`` deploys the stack under a unique name with its own secrets
(random values, never written to a file), on free loopback-reachable host
ports, from images that exist locally (``--resolve-image never``: there is no
registry), and removes everything it made on ``remove()``: the stack, its
volume, its secrets, and the extra image tag an update test uses.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.postgres_stack import postgres_image
from tests.support.processes import REPO
from tests.support.topology import TopologyError, fetch, free_port

STACK_FILE = REPO / "deploy" / "stack.yaml"
DEPLOY_TIMEOUT = 240.0  # from `stack deploy` to every service serving; ~35 s here
REMOVE_TIMEOUT = 90.0
GWBRIDGE = "docker_gwbridge"  # the bridge Swarm tasks reach the host through


def docker(*args: str, timeout: float = 120.0, check: bool = True, input: str | None = None) -> str:
    try:
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, input=input
        )
    except subprocess.TimeoutExpired:
        raise TopologyError(f"docker {' '.join(args)} did not finish in {timeout:.0f} s") from None
    if check and result.returncode != 0:
        raise TopologyError(
            f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def swarm_state() -> tuple[str, bool]:
    """(LocalNodeState, ControlAvailable): ("inactive", False) outside any swarm."""
    out = docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
    state, _, manager = out.strip().partition(" ")
    return state, manager == "true"


@contextmanager
def swarm_mode() -> Iterator[bool]:
    """A swarm this node manages, for the ``with`` block; yields whether we made it."""
    state, manager = swarm_state()
    if state == "active" and manager:
        yield False
        return
    if state != "inactive":
        raise TopologyError(
            f"this node's swarm state is {state!r} (manager: {manager}): the Swarm test "
            "needs a node outside any swarm (it makes and leaves a one-node swarm) "
            "or a manager; it changes neither a worker nor a half-joined node"
        )
    # Docker 20.10's `swarm leave --force` stops the port proxies (docker-proxy)
    # of containers that were running before `swarm init`: compose stacks lose
    # their published ports while they keep running.  So the swarm is made only
    # on a node that publishes nothing (the topology suite runs this module
    # before its own stacks are up); a developer's running stacks are named.
    publishing = [
        line
        for line in docker("ps", "--format", "{{.Names}} {{.Ports}}").splitlines()
        if "->" in line
    ]
    if publishing:
        raise TopologyError(
            "containers publish ports on this node, and leaving the swarm this test "
            "makes would drop them (Docker stops their docker-proxy): stop them, or "
            f"make this node a swarm manager yourself first: {publishing}"
        )
    # `swarm init` also makes the docker_gwbridge network, which `leave` keeps.
    had_gwbridge = bool(docker("network", "ls", "-q", "--filter", f"name=^{GWBRIDGE}$"))
    # Loopback as the advertised address: nothing outside this machine is
    # invited, and no interface of the host is chosen for it.
    docker("swarm", "init", "--advertise-addr", "127.0.0.1", timeout=60)
    try:
        yield True
    finally:
        docker("swarm", "leave", "--force", timeout=60, check=False)
        if not had_gwbridge:
            docker("network", "rm", GWBRIDGE, check=False)
        state, _ = swarm_state()
        if state != "inactive":
            raise TopologyError(f"`docker swarm leave --force` left the node {state!r}")


@dataclass
class Task:
    container: str  # full id
    hostname: str  # what the app puts in X-Served-By
    image: str
    running: bool
    healthy: bool


class SwarmStack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.image = os.environ.get("WSGISTACK_IMAGE") or "wsgistack:latest"
        self.postgres_image = postgres_image()
        self.name = f"wsgistack-swarm-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.secret_prefix = self.name
        self.secret_values = {
            "django_secret_key": secrets.token_hex(32),
            "db_password": secrets.token_hex(24),
        }
        self.ports = {"django": 0, "spa": 0}
        self.update_tag = ""  # a second local tag of the image, for `update --image`
        self._made_secrets: list[str] = []
        self._deployed = False

    # -- names

    def service(self, short: str) -> str:
        return f"{self.name}_{short}"

    @property
    def env(self) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("WSGISTACK_", "DJANGO_", "POSTGRES_"))
        }
        env.update(
            WSGISTACK_IMAGE=self.image,
            WSGISTACK_POSTGRES_IMAGE=self.postgres_image,
            WSGISTACK_SECRET_PREFIX=self.secret_prefix,
            WSGISTACK_SWARM_PORT_DJANGO=str(self.ports["django"]),
            WSGISTACK_SWARM_PORT_SPA=str(self.ports["spa"]),
            # A throwaway cluster: initdb need not fsync.
            POSTGRES_INITDB_ARGS="--no-sync",
        )
        return env

    # -- life cycle

    def preflight(self) -> None:
        for image in (self.image, self.postgres_image):
            found = subprocess.run(
                ["docker", "image", "inspect", image], capture_output=True, timeout=30
            )
            if found.returncode != 0:
                raise TopologyError(
                    f"image {image} not found: run `make image postgres-image` first (or set "
                    "WSGISTACK_IMAGE / WSGISTACK_POSTGRES_IMAGE); the tests never build or pull"
                )

    def deploy(self) -> None:
        self.preflight()
        for short, value in self.secret_values.items():
            name = f"{self.secret_prefix}_{short}"
            docker("secret", "create", name, "-", input=value + "\n")
            self._made_secrets.append(name)
        self.ports = {"django": free_port(), "spa": free_port()}
        self._deployed = True
        result = subprocess.run(
            ["docker", "stack", "deploy", "--resolve-image", "never", "--prune",
             "-c", str(STACK_FILE), self.name],
            env=self.env, capture_output=True, text=True, timeout=120, cwd=REPO,
        )  # fmt: skip
        if result.returncode != 0:
            raise TopologyError(f"docker stack deploy failed:\n{result.stdout}{result.stderr}")
        self.wait_until_serving()

    def wait_until_serving(self, timeout: float = DEPLOY_TIMEOUT) -> None:
        """Migrations done, every appserver task healthy, and edge answering on both ports."""
        deadline = time.monotonic() + timeout
        while True:
            problem = self._not_serving_because()
            if problem is None:
                return
            if time.monotonic() > deadline:
                raise TopologyError(
                    f"the stack did not serve within {timeout:.0f} s: {problem}\n{self.describe()}"
                )
            time.sleep(0.5)

    def _not_serving_because(self) -> str | None:
        states = self.task_states("migrate")
        if "Complete" not in states:
            return f"migrate has not completed: {states}"
        replicas = self.replicas("appserver")
        tasks = [t for t in self.tasks("appserver") if t.running and t.healthy]
        if len(tasks) < replicas:
            return f"{len(tasks)} of {replicas} appserver tasks healthy"
        for port, path in ((self.ports["spa"], "/healthz"), (self.ports["django"], "/hello")):
            try:
                status = fetch(port, path, timeout=5).status
            except OSError as exc:
                return f":{port}{path}: {exc}"
            if status != 200:
                return f":{port}{path}: HTTP {status}"
        return None

    def remove(self) -> None:
        """Everything deploy() made, in order; each step runs even if one before it failed."""
        errors: list[str] = []
        if self._deployed:
            docker("stack", "rm", self.name, check=False, timeout=60)
            deadline = time.monotonic() + REMOVE_TIMEOUT
            # The volume and the network go only once the containers have.
            while self.containers() and time.monotonic() < deadline:
                time.sleep(0.5)
            left = self.containers()
            if left:
                errors.append(f"containers still there after `stack rm`: {left}")
                docker("rm", "-f", *left, check=False)
            network = f"{self.name}_default"
            while docker("network", "ls", "-q", "--filter", f"name={network}", check=False):
                if time.monotonic() > deadline:
                    errors.append(f"network {network} still there")
                    break
                time.sleep(0.5)
            docker("volume", "rm", f"{self.name}_pgdata", check=False)
        for name in self._made_secrets:
            docker("secret", "rm", name, check=False)
        if self.update_tag:
            docker("image", "rm", self.update_tag, check=False)
        if errors:
            raise TopologyError("; ".join(errors))

    # -- what is running

    def containers(self, short: str | None = None) -> list[str]:
        label = (
            f"com.docker.swarm.service.name={self.service(short)}"
            if short
            else f"com.docker.stack.namespace={self.name}"
        )
        return docker("ps", "-aq", "--no-trunc", "--filter", f"label={label}").split()

    def tasks(self, short: str) -> list[Task]:
        ids = docker("ps", "-q", "--no-trunc", "--filter",
                     f"label=com.docker.swarm.service.name={self.service(short)}").split()  # fmt: skip
        if not ids:
            return []
        found = []
        for item in json.loads(docker("inspect", *ids, check=False) or "[]"):
            health = (item["State"].get("Health") or {}).get("Status")
            found.append(
                Task(
                    container=item["Id"],
                    hostname=item["Config"]["Hostname"],
                    image=item["Config"]["Image"],
                    running=bool(item["State"]["Running"]),
                    healthy=health == "healthy",
                )
            )
        return found

    def task_states(self, short: str) -> list[str]:
        out = docker("service", "ps", "--no-trunc", "--format", "{{.CurrentState}}",
                     self.service(short), check=False)  # fmt: skip
        return [line.split()[0] for line in out.splitlines() if line.strip()]

    def replicas(self, short: str) -> int:
        spec = docker("service", "inspect", "--format", "{{.Spec.Mode.Replicated.Replicas}}",
                      self.service(short))  # fmt: skip
        return int(spec.strip())

    def inspect_service(self, short: str) -> str:
        return docker("service", "inspect", self.service(short))

    # -- operations

    def update_image(self, image: str) -> None:
        """A rolling update to ``image`` (``update_config``: one at a time, start-first)."""
        docker("service", "update", "--detach=false", "--quiet", "--image", image,
               self.service("appserver"), timeout=300)  # fmt: skip

    def scale(self, short: str, count: int) -> None:
        docker("service", "scale", "--detach=false", f"{self.service(short)}={count}", timeout=300)

    def kill(self, container: str) -> None:
        docker("kill", container)

    def logs(self, short: str, tail: int | None = None) -> str:
        limit = ["--tail", str(tail)] if tail is not None else []
        result = subprocess.run(
            ["docker", "service", "logs", "--raw", "--no-trunc", *limit, self.service(short)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return result.stdout + result.stderr

    def describe(self, tail: int = 40) -> str:
        parts = [docker("stack", "ps", "--no-trunc", "--format",
                        "{{.Name}} {{.Image}} {{.CurrentState}} {{.Error}}", self.name,
                        check=False)]  # fmt: skip
        for short in ("postgres", "migrate", "appserver", "edge"):
            parts.append(f"--- {short} (last {tail} lines) ---\n{self.logs(short, tail)}")
        return "\n".join(parts)
