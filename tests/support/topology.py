"""The whole stack (edge, appserver replicas, gunicorn) for the topology tests.

Two ways to run it, behind one interface (``Topology``), chosen by
``WSGISTACK_TOPOLOGY``:

``compose`` (the default)
    The real containers: ``scripts/compose.sh -f compose.yaml -p <unique> up -d``
    with the edge's ports published on ephemeral loopback ports (read back with
    ``compose port``), ``down -v`` at the end.  Needs the image
    (``WSGISTACK_IMAGE``, default ``wsgistack:latest``; ``make image`` builds it);
    a missing Docker or image is a failure, never a skip.
``local``
    The same programs on loopback without Docker, for quick iteration: migrate
    and collectstatic into a temporary directory, two ``appserver --ini
    deploy/appserver.ini`` processes, gunicorn, and ``edge -c`` on a copy of
    deploy/edge.yaml whose addresses and directories are rewritten for this
    machine.  There is no DNS here: edge learns of a stopped replica from refused
    connects, and "scale" or "start a replica" rewrite the upstream list and
    reload edge (SIGHUP) instead of relying on re-resolution.

Both modes use the repository's compose.yaml and deploy/ files as they are, so
the tests check what users run.  Everything the tests send goes to 127.0.0.1
on the edge's three published ports.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import REPO, ServerProcess
from tests.support.prometheus import PrometheusAPI, PrometheusProcess

COMPOSE_SH = REPO / "scripts" / "compose.sh"
COMPOSE_FILE = REPO / "compose.yaml"
EDGE_YAML = REPO / "deploy" / "edge.yaml"
APPSERVER_INI = REPO / "deploy" / "appserver.ini"
PROMETHEUS_YML = REPO / "deploy" / "prometheus.yml"
SAMPLEAPP = REPO / "sampleapp"

# The edge's three server blocks (deploy/edge.yaml), by what they serve.
DJANGO = "django"  # :8000 -> appserver pool over uwsgi
GUNICORN = "gunicorn"  # :8001 -> gunicorn over HTTP
SPA = "spa"  # :8080 -> the SPA
CONTAINER_PORTS = {DJANGO: 8000, GUNICORN: 8001, SPA: 8080}
HTTPS_PORT = 8443  # the Django site over TLS (HTTP/2); not in CONTAINER_PORTS: not plain HTTP
MONITORING_PORT = 9145  # edge's /metrics, /stub_status, /status (compose network only)
PROMETHEUS_PORT = 9090  # the `monitoring` profile's Prometheus, published on loopback
DEFAULT_PROMETHEUS_IMAGE = "wsgistack/prometheus:2"  # `make prometheus-image`
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"

# What compose.yaml's `migrate` service pre-compresses for gzip_static.
GZIP_SUFFIXES = (".css", ".js", ".svg", ".txt", ".html", ".json")

# What the image copies from the repository (a change here needs `make image`).
IMAGE_SOURCES = (
    "edge",
    "appserver",
    "uwsgiproto",
    "httpproto",
    "prefork",
    "promtext",
    "sampleapp",
    "docker",
)

UP_TIMEOUT = 240.0  # `up -d`, health-ordered; ~20 s here with the image cached
READY_TIMEOUT = 90.0  # after `up`: every published port answers /healthz
DESCRIBE_TAIL = 60  # log lines per service in a failure message


class TopologyError(AssertionError):
    """The stack could not be brought up or driven; the message carries the logs."""


# --- HTTP through the published ports ------------------------------------------


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 30.0,
) -> Response:
    """One request on a fresh connection to 127.0.0.1:port (no proxies, no retries)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Connection": "close", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        merged: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return Response(response.status, merged, data)
    finally:
        conn.close()


@dataclass
class Outcome:
    """One request of a load loop, as the client saw it."""

    started: float  # time.monotonic()
    elapsed: float
    target: str
    status: int | None = None
    error: str | None = None
    served_by: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200

    def __str__(self) -> str:
        result = self.error or f"HTTP {self.status}"
        return f"+{self.started:.3f}s {self.target}: {result} ({self.elapsed * 1000:.0f} ms)"


class Load:
    """``concurrency`` client threads sending GETs in a loop, bounded by count and time.

    Each request uses a fresh connection: a keep-alive connection that the
    server closes just as the client reuses it fails in any client that does
    not retry, whatever the server does, so it would measure the client.
    """

    def __init__(
        self,
        targets: list[tuple[int, str]],
        *,
        concurrency: int = 4,
        max_seconds: float = 30.0,
        max_requests: int = 5000,
        timeout: float = 15.0,
    ) -> None:
        self.targets = targets
        self.concurrency = concurrency
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every outcome
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._issued = 0
        self.t0 = 0.0

    def __enter__(self) -> Load:
        self.t0 = time.monotonic()
        for n in range(self.concurrency):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def now(self) -> float:
        """Seconds since the load started (the clock of ``Outcome.started``)."""
        return time.monotonic() - self.t0

    def wait_until(self, done: Callable[[list[Outcome]], bool], timeout: float, what: str) -> None:
        """Block until ``done(outcomes so far)`` is true; AssertionError naming ``what`` if not."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(self.outcomes):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"load: {what} not seen within {timeout:.0f} s: {summary(self.outcomes)}"
                    )
                self._changed.wait(min(left, 1.0))

    def wait_for_answers(self, count: int, timeout: float, *, after: float = 0.0) -> None:
        """Block until ``count`` requests started at ``after`` (``now()`` clock) or later are done."""
        self.wait_until(
            lambda outcomes: sum(o.started >= after for o in outcomes) >= count,
            timeout,
            f"{count} answers to requests started after +{after:.1f}s",
        )

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        with self._lock:
            return sorted(self.outcomes, key=lambda o: o.started)

    def _next(self) -> tuple[int, str] | None:
        with self._lock:
            if self._stop.is_set() or self._issued >= self.max_requests:
                return None
            if time.monotonic() - self.t0 > self.max_seconds:
                return None
            target = self.targets[self._issued % len(self.targets)]
            self._issued += 1
            return target

    def _run(self, n: int) -> None:
        while (target := self._next()) is not None:
            port, path = target
            started = time.monotonic()
            outcome = Outcome(started=started - self.t0, elapsed=0.0, target=f":{port}{path}")
            try:
                response = fetch(port, path, timeout=self.timeout)
                outcome.status = response.status
                outcome.served_by = response.header("x-served-by")
            except (OSError, http.client.HTTPException) as exc:
                outcome.error = f"{type(exc).__name__}: {exc}"
            outcome.elapsed = time.monotonic() - started
            with self._changed:
                self.outcomes.append(outcome)
                self._changed.notify_all()


def wait_until_serving(ports: dict[str, int], timeout: float) -> None:
    """Poll /healthz on every published port until each answers 200."""
    deadline = time.monotonic() + timeout
    pending = dict(ports)
    last: dict[str, str] = {}
    while pending:
        for name, port in list(pending.items()):
            try:
                response = fetch(port, "/healthz", timeout=5)
                if response.status == 200:
                    del pending[name]
                    continue
                last[name] = f"HTTP {response.status}: {response.body[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                last[name] = f"{type(exc).__name__}: {exc}"
        if not pending:
            return
        if time.monotonic() > deadline:
            status = ", ".join(f":{ports[name]} ({name}) {last.get(name, '?')}" for name in pending)
            raise TopologyError(
                f"the stack did not serve /healthz within {timeout:.0f} s: {status}"
            )
        time.sleep(0.25)


def wait_until_prometheus_ready(prometheus: PrometheusAPI, timeout: float) -> None:
    """Poll /-/ready on the stack's Prometheus until it answers 200."""
    deadline = time.monotonic() + timeout
    while not prometheus.ready():
        if time.monotonic() > deadline:
            raise TopologyError(
                f"Prometheus on 127.0.0.1:{prometheus.port} was not ready within {timeout:.0f} s"
            )
        time.sleep(0.25)


# --- the interface ----------------------------------------------------------------


class Topology(ABC):
    mode: str
    ports: dict[str, int]
    notes: list[str]  # things worth telling the person running the tests
    env: dict[str, str]  # the stack's environment; a test may add to it before up()
    https_port: int = 0  # the published HTTPS port (edge :8443), once up
    # With ``monitoring``: compose.yaml's `monitoring` profile (Prometheus), and
    # its published port once up.
    monitoring: bool = False
    prometheus_port: int = 0

    def prometheus(self) -> PrometheusAPI:
        """The stack's Prometheus (``monitoring`` stacks only)."""
        if not self.monitoring or not self.prometheus_port:
            raise TopologyError("this stack runs without the monitoring profile")
        return PrometheusAPI(self.prometheus_port)

    @abstractmethod
    def edge_server_label(self, name: str) -> str:
        """The ``server`` label of edge's metrics for one of its server blocks (DJANGO, ...)."""

    @abstractmethod
    def dev_ca(self) -> bytes:
        """The development CA (PEM) that signed the edge's certificate."""

    @abstractmethod
    def up(self) -> None: ...

    @abstractmethod
    def down(self) -> None: ...

    @abstractmethod
    def appserver_replicas(self) -> list[str]:
        """Names of the appserver replicas that are running now."""

    @abstractmethod
    def replica_of(self, served_by: str | None) -> str | None:
        """The appserver replica that produced a response, from its X-Served-By (host/pid)."""

    @abstractmethod
    def stop_replica(self, name: str) -> None:
        """Stop one appserver replica gracefully (SIGTERM), as `docker stop` does."""

    @abstractmethod
    def start_replica(self, name: str) -> None:
        """Start a stopped replica again."""

    @abstractmethod
    def scale_appserver(self, count: int) -> None:
        """Run ``count`` appserver replicas (``up --scale appserver=N``)."""

    @abstractmethod
    def reload_edge(self) -> None:
        """SIGHUP to the edge."""

    @abstractmethod
    def edge_worker_pids(self) -> set[int]:
        """The edge master's children: its current worker processes."""

    @abstractmethod
    def check_edge_config(self) -> subprocess.CompletedProcess[str]:
        """``edge -t`` on the configuration the running edge was started with."""

    @abstractmethod
    def edge_log(self) -> str:
        """Everything the edge wrote to stdout/stderr (the access and error logs)."""

    @abstractmethod
    def logs(self, tail: int | None = None) -> str:
        """Every service's output (the last ``tail`` lines of each), for a failure report."""

    def describe(self) -> str:
        return f"--- {self.mode} stack logs (last {DESCRIBE_TAIL} lines of each) ---\n{self.logs(DESCRIBE_TAIL)}"


def topology_from_env(workdir: Path, *, monitoring: bool = False) -> Topology:
    mode = os.environ.get("WSGISTACK_TOPOLOGY", "compose").strip().lower() or "compose"
    if mode == "compose":
        return ComposeTopology(workdir, monitoring=monitoring)
    if mode == "local":
        return LocalTopology(workdir, monitoring=monitoring)
    raise TopologyError(f"WSGISTACK_TOPOLOGY={mode!r}: expected 'compose' or 'local'")


# --- compose ---------------------------------------------------------------------


def _shipped(path: Path) -> bool:
    """A source file the image build copies (roughly .dockerignore's view)."""
    ignored = ("__pycache__", "staticfiles", "node_modules")
    return (
        path.is_file()
        and path.suffix != ".pyc"
        and not path.name.startswith(("db.sqlite3", ".dev-secret-key"))
        and not any(part in ignored for part in path.parts)
    )


@dataclass
class Container:
    id: str
    name: str
    hostname: str
    running: bool
    number: int


class ComposeTopology(Topology):
    mode = "compose"

    def __init__(self, workdir: Path, *, monitoring: bool = False) -> None:
        self.workdir = workdir
        self.monitoring = monitoring
        self.image = os.environ.get("WSGISTACK_IMAGE") or "wsgistack:latest"
        self.prometheus_image = (
            os.environ.get("WSGISTACK_PROMETHEUS_IMAGE") or DEFAULT_PROMETHEUS_IMAGE
        )
        self.project = f"wsgistack-topology-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.ports = {}
        self._started = False
        self._replica_hosts: dict[str, str] = {}  # container hostname -> container name
        self.notes = []
        env = dict(os.environ)
        # The developer's shell must not reconfigure the stack under test: drop
        # what compose.yaml interpolates, then publish on ephemeral ports.
        for name in list(env):
            if name.startswith(("DJANGO_", "WSGISTACK_PORT_", "COMPOSE_")) or name == "BASE_IMAGE":
                del env[name]
        env.update(
            WSGISTACK_IMAGE=self.image,
            WSGISTACK_PORT_DJANGO="0",
            WSGISTACK_PORT_GUNICORN="0",
            WSGISTACK_PORT_SPA="0",
            WSGISTACK_PORT_HTTPS="0",
            WSGISTACK_PORT_PROMETHEUS="0",
            WSGISTACK_PROMETHEUS_IMAGE=self.prometheus_image,
        )
        self.env = env

    # -- plumbing

    def compose(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(COMPOSE_SH), "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        try:
            result = subprocess.run(
                argv, env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO
            )
        except subprocess.TimeoutExpired as exc:
            output = [
                part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                for part in (exc.stdout, exc.stderr)
            ]
            raise TopologyError(
                f"compose {' '.join(args)} did not finish in {timeout:.0f} s\n{''.join(output)}"
            ) from None
        if check and result.returncode != 0:
            raise TopologyError(
                f"compose {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    @staticmethod
    def docker(
        *args: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise TopologyError(
                f"docker {' '.join(args)} exited {result.returncode}: {result.stderr}"
            )
        return result

    def containers(self, service: str) -> list[Container]:
        listed = self.docker(
            "ps", "-aq", "--no-trunc",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}",
        ).stdout.split()  # fmt: skip
        if not listed:
            return []
        inspected = json.loads(self.docker("inspect", *listed).stdout)
        containers = [
            Container(
                id=item["Id"],
                name=item["Name"].lstrip("/"),
                hostname=item["Config"]["Hostname"],
                running=bool(item["State"]["Running"]),
                number=int(item["Config"]["Labels"].get("com.docker.compose.container-number", 0)),
            )
            for item in inspected
        ]
        return sorted(containers, key=lambda c: c.number)

    # -- life cycle

    def preflight(self) -> None:
        if shutil.which("docker") is None:
            raise TopologyError(
                "docker is not installed: the compose topology tests need a Docker engine "
                "(WSGISTACK_TOPOLOGY=local runs the same tests without Docker)"
            )
        info = self.docker("info", "--format", "{{.ServerVersion}}", check=False)
        if info.returncode != 0:
            raise TopologyError(f"the Docker engine is not reachable: {info.stderr.strip()}")
        version = self.compose("version", check=False, timeout=30)
        if version.returncode != 0:
            raise TopologyError(f"no Docker Compose: {version.stdout}{version.stderr}")
        image = self.docker("image", "inspect", "--format", "{{.Created}}", self.image, check=False)
        if image.returncode != 0:
            raise TopologyError(
                f"image {self.image} not found: run `make image` first "
                "(or set WSGISTACK_IMAGE); the tests never build or pull it"
            )
        self._note_stale_image(image.stdout.strip())
        if self.monitoring:
            found = self.docker("image", "inspect", self.prometheus_image, check=False)
            if found.returncode != 0:
                raise TopologyError(
                    f"image {self.prometheus_image} not found: run `make prometheus-image` "
                    "first (or set WSGISTACK_PROMETHEUS_IMAGE); the tests never build or pull it"
                )

    def _note_stale_image(self, created: str) -> None:
        """Say so when the code changed after the image was built: the tests run the image."""
        try:
            built = datetime.fromisoformat(created.replace("Z", "+00:00")[:26] + "+00:00")
        except ValueError:
            return
        newest = max(
            (
                p.stat().st_mtime
                for d in IMAGE_SOURCES
                for p in (REPO / d).rglob("*")
                if _shipped(p)
            ),
            default=0.0,
        )
        if newest > built.timestamp():
            changed = datetime.fromtimestamp(newest, tz=UTC).strftime("%H:%M:%S UTC")
            self.notes.append(
                f"note: {self.image} was built {built:%H:%M:%S UTC} but the code changed at "
                f"{changed}; these tests run the image: `make image` to test the new code"
            )

    def up(self) -> None:
        if self.monitoring:
            # Added to whatever a subclass turned on (the postgres stack: `postgres`).
            profiles = {p for p in self.env.get("COMPOSE_PROFILES", "").split(",") if p}
            self.env["COMPOSE_PROFILES"] = ",".join(sorted(profiles | {"monitoring"}))
        self.preflight()
        self._started = True
        try:
            self.compose("up", "-d", "--no-build", timeout=UP_TIMEOUT)
            for name, container_port in CONTAINER_PORTS.items():
                self.ports[name] = self._published_port(container_port)
            self.https_port = self._published_port(HTTPS_PORT)
            wait_until_serving(self.ports, READY_TIMEOUT)
            if self.monitoring:
                self.prometheus_port = self._published_port(PROMETHEUS_PORT, "prometheus")
                wait_until_prometheus_ready(self.prometheus(), READY_TIMEOUT)
        except TopologyError as exc:
            raise TopologyError(f"{exc}\n{self.describe()}") from None

    def dev_ca(self) -> bytes:
        result = self.compose("exec", "-T", "edge", "cat", "/srv/tls/dev-ca.crt")
        return result.stdout.encode()

    def _published_port(self, container_port: int, service: str = "edge") -> int:
        deadline = time.monotonic() + 30
        while True:
            out = self.compose("port", service, str(container_port), check=False).stdout.strip()
            match = re.search(r":(\d+)$", out)
            if match and int(match.group(1)):
                return int(match.group(1))
            if time.monotonic() > deadline:
                raise TopologyError(f"{service} publishes no port for {container_port}: {out!r}")
            time.sleep(0.5)

    def down(self) -> None:
        if self._started:
            # No --timeout: each service's stop_grace_period applies, as for users.
            self.compose("down", "-v", "--remove-orphans", timeout=180)

    # -- operations

    def appserver_replicas(self) -> list[str]:
        return [c.name for c in self.containers("appserver") if c.running]

    def edge_server_label(self, name: str) -> str:
        # deploy/edge.yaml's `listen: 8000` is all addresses.
        return f"0.0.0.0:{CONTAINER_PORTS[name]}"

    def replica_of(self, served_by: str | None) -> str | None:
        if not served_by:
            return None
        host = served_by.partition("/")[0]
        if host not in self._replica_hosts:
            # A host not seen yet: a new replica, or not an appserver at all.
            # Containers keep their hostname across stop/start, so the map
            # only grows; a miss costs one `docker inspect`.
            for container in self.containers("appserver"):
                self._replica_hosts[container.hostname] = container.name
        return self._replica_hosts.get(host)

    def stop_replica(self, name: str) -> None:
        # What `docker compose stop` does to each container: SIGTERM, then
        # SIGKILL after the grace period (compose.yaml: 30 s).
        self.docker("stop", "--time", "30", name, timeout=60)

    def start_replica(self, name: str) -> None:
        self.docker("start", name)

    def scale_appserver(self, count: int) -> None:
        self.compose(
            "up", "-d", "--no-build", "--no-deps", "--no-recreate",
            "--scale", f"appserver={count}", "appserver",
            timeout=UP_TIMEOUT,
        )  # fmt: skip

    def reload_edge(self) -> None:
        self.compose("kill", "-s", "HUP", "edge")

    def _edge_container(self) -> str:
        running = [c.name for c in self.containers("edge") if c.running]
        if len(running) != 1:
            raise TopologyError(f"expected one running edge container, got {running}")
        return running[0]

    def edge_worker_pids(self) -> set[int]:
        # Host pids: docker-init (1 in the container) -> edge master -> workers.
        rows = self.docker("top", self._edge_container(), "-eo", "pid,ppid,args").stdout
        processes = []
        for line in rows.splitlines()[1:]:
            pid, ppid, args = line.split(None, 2)
            processes.append((int(pid), int(ppid), args))
        edge = {pid for pid, _, args in processes if "edge" in args and "docker-init" not in args}
        return {pid for pid, ppid, _ in processes if pid in edge and ppid in edge}

    def check_edge_config(self) -> subprocess.CompletedProcess[str]:
        return self.docker(
            "exec", self._edge_container(), "edge", "-t", "-c", "/etc/wsgistack/edge.yaml",
            check=False,
        )  # fmt: skip

    def edge_log(self) -> str:
        return self.compose("logs", "--no-color", "edge", check=False).stdout

    def logs(self, tail: int | None = None) -> str:
        limit = [f"--tail={tail}"] if tail is not None else []
        result = self.compose("logs", "--no-color", "--timestamps", *limit, check=False, timeout=60)
        ps = self.docker(
            "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
            "--format", "{{.Names}}\t{{.Status}}", check=False,
        ).stdout  # fmt: skip
        return f"{ps}\n{result.stdout}{result.stderr}"


# --- local --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def precompress(root: Path) -> None:
    """What compose.yaml's `migrate` does after collectstatic: NAME.gz next to text files."""
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in GZIP_SUFFIXES:
            target = path.with_name(path.name + ".gz")
            target.write_bytes(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))
            stat = path.stat()
            os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@dataclass
class LocalReplica:
    name: str
    server: ServerProcess
    address: tuple[str, int]
    metrics: tuple[str, int]  # its metrics-http listener (the `appserver` scrape target)
    pids: set[int] = field(default_factory=set)
    running: bool = True

    def worker_pids(self) -> set[int]:
        found = {int(p) for p in re.findall(r"spawned worker \d+ \(pid: (\d+)", self.server.log())}
        self.pids |= found | {self.server.pid}
        return self.pids


class LocalTopology(Topology):
    mode = "local"

    def __init__(self, workdir: Path, *, monitoring: bool = False) -> None:
        self.workdir = workdir
        self.monitoring = monitoring
        self.prometheus_process: PrometheusProcess | None = None
        # No DNS here: the appserver scrape targets come from this file
        # (file_sd), rewritten whenever replicas come and go.
        self.prometheus_targets = workdir / "appserver-targets.json"
        self.ports = {}
        self.monitoring_port = 0
        self.static_root = workdir / "static"
        self.env = {
            "DJANGO_SECRET_KEY": "topology-local-" + "k" * 40,
            "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1,[::1],edge",
            "SQLITE_PATH": str(workdir / "db.sqlite3"),
            "STATIC_ROOT": str(self.static_root),
        }
        self.replicas: list[LocalReplica] = []
        self._started_replicas = 0
        self._replica_pids: dict[int, str] = {}  # worker pid -> replica name
        self.notes = []
        self.gunicorn: ServerProcess | None = None
        self.gunicorn_port = 0
        self.edge: ServerProcess | None = None
        self.edge_config = workdir / "edge.yaml"

    def up(self) -> None:
        for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
            result = subprocess.run(
                [sys.executable, str(SAMPLEAPP / "manage.py"), *command],
                env={**os.environ, **self.env},
                capture_output=True,
                text=True,
                timeout=120,
            )
            if result.returncode != 0:
                raise TopologyError(
                    f"manage.py {command[0]} failed:\n{result.stdout}{result.stderr}"
                )
        precompress(self.static_root)
        try:
            for _ in range(2):
                self._start_appserver()
            self._start_gunicorn()
            self.ports = {DJANGO: free_port(), GUNICORN: free_port(), SPA: free_port()}
            self.https_port = int(self.env.get("WSGISTACK_PORT_HTTPS") or 0) or free_port()
            self.monitoring_port = free_port()  # deploy/edge.yaml's :9145
            # What the edge container's entrypoint does at its first start.
            subprocess.run(
                ["sh", str(ENTRYPOINT), "dev-cert", str(self.workdir / "tls")],
                env={**os.environ, "WSGISTACK_NO_TINI": "1"},
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._write_edge_config()
            self.edge = ServerProcess(
                [sys.executable, "-m", "edge", "-c", str(self.edge_config)],
                cwd=self.workdir,
                log_path=self.workdir / "edge.log",
                env=self.env,
            ).start()
            wait_until_serving(self.ports, READY_TIMEOUT)
            if self.monitoring:
                self._start_prometheus()
        except AssertionError as exc:
            raise TopologyError(f"{exc}\n{self.describe()}") from None

    def _start_prometheus(self) -> None:
        """deploy/prometheus.yml with this machine's targets, on the host's prometheus."""
        port = free_port()
        config = yaml.safe_load(PROMETHEUS_YML.read_text())
        for job in config["scrape_configs"]:
            if job["job_name"] == "edge":
                job["static_configs"] = [{"targets": [f"127.0.0.1:{self.monitoring_port}"]}]
            elif job["job_name"] == "appserver":
                del job["dns_sd_configs"]
                job["file_sd_configs"] = [
                    {"files": [str(self.prometheus_targets)], "refresh_interval": "1s"}
                ]
            elif job["job_name"] == "prometheus":
                job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
        self._write_prometheus_targets()
        directory = self.workdir / "prometheus"
        directory.mkdir(exist_ok=True)
        self.prometheus_process = PrometheusProcess(
            directory, yaml.safe_dump(config, sort_keys=False), listen=f"127.0.0.1:{port}"
        ).start()
        self.prometheus_port = port

    def _write_prometheus_targets(self) -> None:
        targets = [f"{r.metrics[0]}:{r.metrics[1]}" for r in self.replicas if r.running]
        # Whole or not at all: Prometheus may read the file at any moment.
        partial = self.prometheus_targets.with_suffix(".tmp")
        partial.write_text(json.dumps([{"targets": targets, "labels": {}}]))
        partial.replace(self.prometheus_targets)

    def _start_appserver(self) -> LocalReplica:
        self._started_replicas += 1
        number = self._started_replicas
        ini = self.workdir / f"appserver-{number}.ini"
        text = APPSERVER_INI.read_text()
        text = re.sub(r"(?m)^socket = .*$", "socket = 127.0.0.1:0", text)
        text = re.sub(r"(?m)^chdir = .*$", f"chdir = {SAMPLEAPP}", text)
        # compose's :9192 on every replica's own network; here they share loopback.
        text = re.sub(r"(?m)^metrics-http = .*$", "metrics-http = 127.0.0.1:0", text)
        ini.write_text(text)
        server = ServerProcess(
            [sys.executable, "-m", "appserver", "--ini", str(ini)],
            cwd=self.workdir,
            log_path=self.workdir / f"appserver-{number}.log",
            env=self.env,
        ).start()
        address = server.address("uwsgi")
        # Its metrics-http listener: the `appserver` job's target for this replica.
        bound = server.wait_for_log(r"metrics server on http://([\d.]+):(\d+)/metrics")
        metrics = (bound.group(1), int(bound.group(2)))
        server.wait_ready(workers=2)
        replica = LocalReplica(f"appserver-{number}", server, address, metrics)
        replica.worker_pids()
        self.replicas.append(replica)
        return replica

    def _start_gunicorn(self) -> None:
        # compose.yaml's gunicorn command line, on a loopback port and this checkout.
        port = free_port()
        self.gunicorn_port = port
        command = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["gunicorn"]["command"]
        assert command[0] == "gunicorn", command
        args = []
        for arg in command[1:]:
            if arg.startswith("--bind="):
                arg = f"--bind=127.0.0.1:{port}"
            elif arg.startswith("--chdir="):
                arg = f"--chdir={SAMPLEAPP}"
            args.append(arg)
        self.gunicorn = ServerProcess(
            [sys.executable, "-m", "gunicorn", *args],
            cwd=self.workdir,
            log_path=self.workdir / "gunicorn.log",
            # compose.yaml's XDG_RUNTIME_DIR, for gunicorn's control socket.
            env={**self.env, "XDG_RUNTIME_DIR": str(self.workdir)},
        ).start()
        self.gunicorn.wait_for_log(r"Booting worker", timeout=30)

    def _write_edge_config(self) -> None:
        """deploy/edge.yaml with this machine's addresses and directories."""
        config = yaml.safe_load(EDGE_YAML.read_text())
        listen = {
            8000: self.ports[DJANGO],
            8001: self.ports[GUNICORN],
            8080: self.ports[SPA],
            HTTPS_PORT: self.https_port,
            MONITORING_PORT: self.monitoring_port,
        }
        for server in config["servers"]:
            port, *options = str(server["listen"]).split()
            server["listen"] = " ".join((f"127.0.0.1:{listen[int(port)]}", *options))
            for key in ("ssl_certificate", "ssl_certificate_key"):
                if key in server:
                    server[key] = str(self.workdir / "tls" / Path(server[key]).name)
            for location in server["locations"]:
                for key in ("root", "alias"):
                    if key in location:
                        location[key] = self._local_path(location[key])
        app = config["upstreams"]["appserver"]
        template = dict(app["servers"][0])
        app["servers"] = [
            {**template, "address": f"{r.address[0]}:{r.address[1]}"}
            for r in self.replicas
            if r.running
        ]
        config["upstreams"]["gunicorn"]["servers"][0]["address"] = f"127.0.0.1:{self.gunicorn_port}"
        self.edge_config.write_text(yaml.safe_dump(config, sort_keys=False))
        if self.prometheus_process is not None:
            self._write_prometheus_targets()

    def dev_ca(self) -> bytes:
        return (self.workdir / "tls" / "dev-ca.crt").read_bytes()

    def _local_path(self, path: str) -> str:
        slash = "/" if path.endswith("/") else ""
        if path.rstrip("/") == "/srv/static":
            return str(self.static_root) + slash
        if path.startswith("/app/"):
            return str(REPO / path.removeprefix("/app/").rstrip("/")) + slash
        return path

    def down(self) -> None:
        """Stop as `docker compose down` does: edge first (SIGQUIT), then the backends (SIGTERM)."""
        stages = [
            [(self.prometheus_process, signal.SIGTERM), (self.edge, signal.SIGQUIT)],
            [(self.gunicorn, signal.SIGTERM)]
            + [(r.server, signal.SIGTERM) for r in self.replicas if r.running],
        ]
        for stage in stages:
            running = [
                (process, signum)
                for process, signum in stage
                if process is not None and process.proc is not None and process.proc.poll() is None
            ]
            for process, signum in running:
                process.signal(signum)
            for process, _ in running:
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    process.stop()

    def appserver_replicas(self) -> list[str]:
        return [r.name for r in self.replicas if r.running]

    def edge_server_label(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def replica_of(self, served_by: str | None) -> str | None:
        if not served_by:
            return None
        pid = served_by.rpartition("/")[2]
        if not pid.isdigit():
            return None
        if int(pid) not in self._replica_pids:
            for replica in self.replicas:
                for worker in replica.worker_pids():
                    self._replica_pids[worker] = replica.name
        return self._replica_pids.get(int(pid))

    def _replica(self, name: str) -> LocalReplica:
        for replica in self.replicas:
            if replica.name == name:
                return replica
        raise KeyError(name)

    def stop_replica(self, name: str) -> None:
        # No DNS here: the edge learns of a stopped replica through refused
        # connects (passive health), as it does in Docker before re-resolving.
        replica = self._replica(name)
        replica.server.signal(signal.SIGTERM)
        replica.server.wait(timeout=40)
        replica.running = False
        if self.prometheus_process is not None:
            self._write_prometheus_targets()  # as the replica leaves Docker's DNS

    def start_replica(self, name: str) -> None:
        replica = self._replica(name)
        # A new process (new port), put in the upstream list by a reload.
        self.replicas.remove(replica)
        self._start_appserver().name = name
        self._write_edge_config()
        self.reload_edge()

    def scale_appserver(self, count: int) -> None:
        while len(self.appserver_replicas()) < count:
            self._start_appserver()
        for replica in [r for r in self.replicas if r.running][count:]:
            self.stop_replica(replica.name)
        self._write_edge_config()
        self.reload_edge()

    def reload_edge(self) -> None:
        assert self.edge is not None
        self.edge.signal(signal.SIGHUP)

    def edge_worker_pids(self) -> set[int]:
        assert self.edge is not None
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == self.edge.pid:
                children.add(int(stat.parent.name))
        return children

    def check_edge_config(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge", "-t", "-c", str(self.edge_config)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def edge_log(self) -> str:
        return self.edge.log() if self.edge is not None else ""

    def logs(self, tail: int | None = None) -> str:
        parts = []
        processes = [self.edge, self.gunicorn, *(r.server for r in self.replicas)]
        for process in [*processes, self.prometheus_process]:
            if process is not None:
                lines = process.log().splitlines()[-tail if tail else 0 :]
                parts.append(f"--- {process.log_path.name} ---\n" + "\n".join(lines))
        return "\n".join(parts)


# --- assertions helpers ---------------------------------------------------------------


def failures(outcomes: Iterable[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.ok]


def summary(outcomes: list[Outcome], limit: int = 20) -> str:
    bad = failures(outcomes)
    lines = [f"{len(outcomes)} requests, {len(bad)} failed"]
    lines += [f"  {o}" for o in bad[:limit]]
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more")
    return "\n".join(lines)
