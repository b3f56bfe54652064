"""Start, check and stop the servers of one stack.

Theory of operation: a ``Deployment`` is one stack serving one app (Django,
the raw WSGI hello, or static files).  It starts the backend, waits for its
port, then starts the front (nginx or edge) with a config generated into the
run's temp directory, and waits for that port.  Every server process runs in
its own session pinned to the server core (``taskset``), so stopping it is a
signal to its process group: SIGINT (fast shutdown for nginx, uWSGI,
gunicorn and appserver alike), then SIGKILL after a grace period.

``missing_reason`` says, before anything starts, why a stack cannot run here
(a binary or package that is not installed, an edge CLI not written yet); the
report lists those cases as missing with that reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from bench.cases import GTHREAD_THREADS, UPSTREAM_KEEPALIVE, App, Stack
from bench.cpu import program_of

REPO = Path(__file__).resolve().parent.parent
SAMPLEAPP = REPO / "sampleapp"
APPS = Path(__file__).resolve().parent / "apps"
UWSGI_PARAMS = Path("/etc/nginx/uwsgi_params")
STATIC_FILES = {"file-1k.txt": 1024, "file-100k.txt": 100 * 1024}
LISTEN_BACKLOG = 1024  # the same accept queue for every backend (uWSGI's default is 100)
START_TIMEOUT_S = 30.0
# Then SIGKILL: nothing a benchmark server holds needs a clean exit, and the
# quick run's 3-minute budget has no room for uWSGI's 1 s worker burial.
STOP_GRACE_S = 0.1


class StartError(Exception):
    """A server exited or did not open its port in time; carries its log tail."""


@dataclass(slots=True)
class Environment:
    """Everything a deployment needs from the run: paths, pinning, app settings."""

    work: Path
    server_cpus: str | None
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    static_root: Path = field(init=False)
    database: Path = field(init=False)

    certificate: Path = field(init=False)  # one EC P-256 pair for every TLS front
    key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.static_root = self.work / "static"
        self.database = self.work / "db.sqlite3"
        self.certificate = self.work / "tls" / "bench.crt"
        self.key = self.work / "tls" / "bench.key"

    def app_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SECRET_KEY="bench-not-secret-" + "x" * 40,
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
            DJANGO_DEBUG="0",
            DJANGO_LOG_LEVEL="WARNING",
            SQLITE_PATH=str(self.database),
            BENCH_STATIC_ROOT=str(self.static_root),
        )
        env.pop("DATABASE_URL", None)
        return env

    def tool(self, name: str) -> str | None:
        """A console script from the venv, else from PATH."""
        candidate = self.bin_dir / name
        if candidate.exists():
            return str(candidate)
        return shutil.which(name)


# -- availability ---------------------------------------------------------------


@cache
def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None


def missing_reason(env: Environment, stack: Stack, app: App) -> str | None:
    """Why this stack cannot serve this app here, or None when it can."""
    reasons: list[str] = []
    if stack.front == "nginx":
        if nginx_binary() is None:
            reasons.append("nginx is not installed (apt-get install nginx)")
        elif stack.protocol == "uwsgi" and stack.backend and not UWSGI_PARAMS.exists():
            reasons.append(f"{UWSGI_PARAMS} is missing (Debian package nginx-common)")
    if stack.tls and shutil.which("h2load") is None:
        reasons.append("h2load is not installed (apt-get install nghttp2-client)")
    if stack.tls and shutil.which("openssl") is None:
        reasons.append("openssl is not installed (apt-get install openssl)")
    if stack.front == "edge" and not _has_module("edge.cli"):
        reasons.append("the edge CLI is not there yet (no edge/cli.py)")
    if stack.backend == "appserver" and not _has_module("appserver.cli"):
        reasons.append("appserver is not importable")
    if stack.backend == "uwsgi" and env.tool("uwsgi") is None:
        reasons.append("uWSGI is not installed (pip install uwsgi)")
    if stack.backend in ("gunicorn-sync", "gunicorn-gthread"):
        if env.tool("gunicorn") is None:
            reasons.append("gunicorn is not installed (pip install gunicorn)")
        elif stack.protocol == "uwsgi" and not _has_module("gunicorn.uwsgi"):
            reasons.append("the installed gunicorn has no --protocol uwsgi (needs gunicorn >= 24)")
    if app in ("django", "django-min") and stack.backend and not _has_module("django"):
        reasons.append("Django is not installed")
    if app == "static" and stack.backend and not _has_module("whitenoise"):
        reasons.append("WhiteNoise is not installed (pip install whitenoise)")
    return "; ".join(reasons) or None


# -- processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log: Path,
        cpus: str | None,
    ) -> None:
        self.name = name
        # What the CPU column calls it: taskset execs, so this pid is the server's own.
        self.program = program_of(argv) or name
        self.log = log
        taskset = shutil.which("taskset")
        prefix = [taskset, "-c", cpus] if cpus is not None and taskset else []
        self.argv = prefix + argv
        with open(log, "wb") as output:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_for_port(self, port: int, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise StartError(
                    f"{self.name} exited with status {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise StartError(
                        f"{self.name} did not open port {port} in {timeout:.0f}s: {self.log_tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._signal_group(signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        # Workers can outlive their master for a moment; the group goes as a whole.
        self._signal_group(signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


# -- commands -------------------------------------------------------------------


def _app_location(app: App) -> tuple[Path, str]:
    """(directory to chdir into, module:callable) for each app."""
    if app == "django":
        return SAMPLEAPP, "sampleapp.wsgi:application"
    if app == "django-min":
        return APPS, "django_min.wsgi:application"
    if app == "raw":
        return APPS, "hello_wsgi:application"
    return APPS, "static_whitenoise:application"


def _uwsgi_virtualenv() -> list[str]:
    # uWSGI embeds its own interpreter; point it at our venv's site-packages.
    return ["--virtualenv", sys.prefix] if sys.prefix != sys.base_prefix else []


def backend_command(env: Environment, stack: Stack, app: App, port: int) -> list[str]:
    address = f"127.0.0.1:{port}"
    directory, module = _app_location(app)
    if stack.backend == "appserver":
        flag = "--socket" if stack.protocol == "uwsgi" else "--http-socket"
        return [
            sys.executable, "-m", "appserver", flag, address,
            "--master", "--processes", "1", "--disable-logging",
            "--listen", str(LISTEN_BACKLOG), "--chdir", str(directory), "--module", module,
            *(["--metrics-http", f"127.0.0.1:{free_port()}"] if stack.appserver_metrics else []),
        ]  # fmt: skip
    if stack.backend == "uwsgi":
        uwsgi = env.tool("uwsgi") or "uwsgi"
        if stack.protocol == "uwsgi":
            listen = ["--socket", address]
        else:
            # uWSGI's http-socket closes the connection after every response
            # without saying so; wrk would count each close as a read error.
            # The header tells wrk to reconnect, which is what happens anyway.
            listen = ["--http-socket", address, "--add-header", "Connection: close"]
        return [
            uwsgi, *listen, "--master", "--processes", "1", "--disable-logging",
            "--listen", str(LISTEN_BACKLOG), "--need-app", *_uwsgi_virtualenv(),
            "--chdir", str(directory), "--module", module,
        ]  # fmt: skip
    if stack.backend in ("gunicorn-sync", "gunicorn-gthread"):
        gunicorn = env.tool("gunicorn") or "gunicorn"
        worker = ["--worker-class", "sync"]
        if stack.backend == "gunicorn-gthread":
            worker = ["--worker-class", "gthread", "--threads", str(GTHREAD_THREADS)]
        protocol = ["--protocol", "uwsgi"] if stack.protocol == "uwsgi" else []
        return [
            gunicorn, "--bind", address, "--workers", "1", *worker, *protocol,
            "--backlog", str(LISTEN_BACKLOG), "--log-level", "warning",
            "--chdir", str(directory), module,
        ]  # fmt: skip
    raise ValueError(f"stack {stack.name} has no backend")


_NGINX_TYPES = "types { text/plain txt; text/html html; application/json json; }"


def nginx_config(
    directory: Path,
    port: int,
    backend_port: int | None,
    protocol: str,
    static_root: Path,
    *,
    as_root: bool,
    keepalive: int = UPSTREAM_KEEPALIVE,
    tls: tuple[Path, Path] | None = None,
) -> str:
    """nginx.conf for one stack: 1 worker, no access log, every temp path inside ``directory``.

    ``tls``: (certificate, key) to listen with TLS and HTTP/2, nginx's TLS defaults.
    """
    if backend_port is None:
        upstream = ""
        # The same open-file cache on both sides (nginx's directive, edge's key of that name).
        location = (
            f"location /static/ {{ alias {static_root}/; "
            "open_file_cache max=1000 inactive=20s; open_file_cache_valid 60s; }"
        )
    elif protocol == "uwsgi":
        # nginx keeps no idle connections to uwsgi peers: the protocol has no keep-alive.
        upstream = f"upstream backend {{ server 127.0.0.1:{backend_port}; }}"
        location = f"location / {{ include {directory}/uwsgi_params; uwsgi_pass backend; }}"
    else:
        idle = f" keepalive {keepalive};" if keepalive > 0 else ""
        upstream = f"upstream backend {{ server 127.0.0.1:{backend_port};{idle} }}"
        location = (
            "location / { proxy_pass http://backend; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; proxy_set_header Host $host; }'
        )
    user = "user root root;" if as_root else ""
    listen = f"127.0.0.1:{port}"
    secure = ""
    if tls is not None:
        listen += " ssl http2"
        # h2load runs far more than keepalive_requests (1000) on one connection.
        secure = (
            f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]}; keepalive_requests 10000000;"
        )
    return f"""{user}
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    {_NGINX_TYPES}
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    uwsgi_temp_path {directory}/uwsgi;
    fastcgi_temp_path {directory}/fastcgi;
    scgi_temp_path {directory}/scgi;
    {upstream}
    server {{
        listen {listen};
        {secure}
        {location}
    }}
}}
"""


def edge_config(
    directory: Path,
    port: int,
    backend_port: int | None,
    protocol: str,
    static_root: Path,
    *,
    keepalive: int = UPSTREAM_KEEPALIVE,
    tls: tuple[Path, Path] | None = None,
    metrics: bool = False,
) -> str:
    """edge YAML for one stack, mirroring nginx_config: 1 worker, no access log.

    ``metrics`` adds a ``/metrics`` location, which turns edge's counters on
    (docs/monitoring.md): the ``*-metrics`` stacks measure what they cost.

    ``keepalive`` is the upstream's idle-connection pool; for a uwsgi upstream,
    above 0 also means edge offers persistent uwsgi connections, and 0 means
    standard one-shot packets (docs/uwsgi-keepalive.md).
    """
    if backend_port is None:
        upstreams = ""
        location = (
            f"      - path: /static/\n        alias: {static_root}/\n"
            "        open_file_cache: {max: 1000, inactive: 20s, valid: 60s}\n"
        )
    else:
        upstreams = (
            "upstreams:\n"
            "  backend:\n"
            f"    servers: ['127.0.0.1:{backend_port}']\n"
            f"    keepalive: {keepalive}\n"
        )
        location = f"      - path: /\n        proxy: backend\n        protocol: {protocol}\n"
    if metrics:
        location += (
            "      - path: = /metrics\n        metrics: prometheus\n"
            "        access: [allow 127.0.0.1, deny all]\n"
        )
    server = f"  - listen: 127.0.0.1:{port}\n"
    if tls is not None:
        server = (
            f'  - listen: "127.0.0.1:{port} ssl http2"\n'
            f"    ssl_certificate: {tls[0]}\n    ssl_certificate_key: {tls[1]}\n"
            "    keepalive_requests: 10000000\n"
        )
    return (
        "worker_processes: 1\n"
        "worker_connections: 4096\n"
        "access_log: off\n"
        f"error_log: {{path: {directory}/error.log, level: warn}}\n"
        f"{upstreams}"
        "servers:\n"
        f"{server}"
        "    locations:\n"
        f"{location}"
    )


# -- deployments ----------------------------------------------------------------


class Deployment:
    """One stack serving one app; ``start`` returns the base URL wrk talks to."""

    def __init__(self, env: Environment, stack: Stack, app: App) -> None:
        self.env = env
        self.stack = stack
        self.app = app
        self.directory = env.work / f"{stack.name}-{app}"
        self.processes: list[ServerProcess] = []

    def start(self) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        backend_port: int | None = None
        if self.stack.backend is not None:
            backend_port = free_port()
            argv = backend_command(self.env, self.stack, self.app, backend_port)
            self._spawn(self.stack.backend, argv, self.env.work, backend_port)
        if self.stack.front == "direct":
            assert backend_port is not None
            return f"http://127.0.0.1:{backend_port}"
        port = free_port()
        tls = (self.env.certificate, self.env.key) if self.stack.tls else None
        if tls is not None:
            write_certificate(self.env)
        if self.stack.front == "nginx":
            nginx = nginx_binary() or "nginx"
            if UWSGI_PARAMS.exists():
                shutil.copyfile(UWSGI_PARAMS, self.directory / "uwsgi_params")
            conf = self.directory / "nginx.conf"
            conf.write_text(
                nginx_config(
                    self.directory, port, backend_port, self.stack.protocol,
                    self.env.static_root, as_root=os.geteuid() == 0,
                    keepalive=self.stack.upstream_keepalive, tls=tls,
                )
            )  # fmt: skip
            argv = [nginx, "-c", str(conf), "-p", str(self.directory)]
        else:
            conf = self.directory / "edge.yaml"
            conf.write_text(
                edge_config(
                    self.directory, port, backend_port, self.stack.protocol, self.env.static_root,
                    keepalive=self.stack.upstream_keepalive, tls=tls, metrics=self.stack.metrics,
                )
            )  # fmt: skip
            edge = self.env.tool("edge")
            argv = [edge] if edge else [sys.executable, "-m", "edge"]
            argv += ["-c", str(conf)]
        self._spawn(self.stack.front, argv, self.directory, port)
        return f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    def _spawn(self, name: str, argv: list[str], cwd: Path, port: int) -> None:
        process = ServerProcess(
            name, argv, cwd=cwd, env=self.env.app_env(),
            log=self.directory / f"{name}.log", cpus=self.env.server_cpus,
        )  # fmt: skip
        self.processes.append(process)
        process.wait_for_port(port)

    def roots(self) -> list[tuple[str, int]]:
        """(program, pid) of each server the harness started, the front first."""
        return [(p.program, p.proc.pid) for p in reversed(self.processes)]

    def logs(self) -> str:
        return "\n".join(f"[{p.name}] {p.log_tail(8)}" for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


# -- run-wide preparation -------------------------------------------------------


def write_static_files(env: Environment) -> None:
    env.static_root.mkdir(parents=True, exist_ok=True)
    line = b"wsgistack bench static file: the quick brown fox jumps over the lazy dog.\n"
    for name, size in STATIC_FILES.items():
        body = (line * (size // len(line) + 1))[:size]
        (env.static_root / name).write_bytes(body)


def write_certificate(env: Environment) -> None:
    """A self-signed EC P-256 certificate for 127.0.0.1 (h2load does not verify it)."""
    if env.certificate.exists() and env.key.exists():
        return
    env.certificate.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "7", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(env.key), "-out", str(env.certificate),
        ],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip


def migrate_django(env: Environment) -> str | None:
    """Create the SQLite database (migrations seed the items); an error message or None."""
    done = subprocess.run(
        [sys.executable, str(SAMPLEAPP / "manage.py"), "migrate", "--noinput", "-v", "0"],
        cwd=SAMPLEAPP,
        env=env.app_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        return f"manage.py migrate failed: {(done.stderr or done.stdout).strip()[-400:]}"
    return None
