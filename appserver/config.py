"""The typed, validated configuration of one appserver instance.

``AppServerConfig`` is what every other module reads; it is built only by
``appserver.options`` (from ini files and command-line flags, with uWSGI's
option names) and is immutable, so a reload builds a new one.  Paths are
already absolute: relative ones were resolved against the directory the
server was started from (pidfile, daemonize, logto, sockets) or against
``chdir`` (wsgi-file, static-map), as uWSGI does.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(Exception):
    """A bad option: the message is one line naming the file or flag, the key and the cause."""


@dataclass(frozen=True, slots=True)
class AppServerConfig:
    # Listeners.  Addresses are "host:port", ":port" (all interfaces), "[v6]:port" or a unix path.
    sockets: tuple[str, ...] = ()  # uwsgi protocol, served by the workers
    http_sockets: tuple[str, ...] = ()  # HTTP/1.1, served by the workers
    http: tuple[str, ...] = ()  # HTTP front process proxying to the workers
    chmod_socket: int | None = None  # mode for unix sockets, e.g. 0o666
    listen: int = 1024  # backlog

    # The application.
    chdir: str | None = None
    module: str | None = None  # "pkg.mod" or "pkg.mod:callable"
    wsgi_file: str | None = None
    callable: str = "application"
    mounts: tuple[tuple[str, str], ...] = ()  # (SCRIPT_NAME prefix, module or file)
    manage_script_name: bool = False
    env: tuple[tuple[str, str], ...] = ()
    virtualenv: str | None = None
    pythonpath: tuple[str, ...] = ()

    # Processes.
    master: bool = False
    processes: int = 1
    threads: int = 1
    enable_threads: bool = True
    lazy_apps: bool = False
    harakiri: int = 0  # seconds; 0 = off
    max_requests: int = 0  # 0 = off
    max_requests_delta: int | None = None  # jitter; None = up to 10% of max_requests
    reload_on_rss: int = 0  # MB; 0 = off
    worker_reload_mercy: int = 60  # seconds a stopping worker gets before SIGKILL
    die_on_term: bool = False  # accepted for uWSGI compatibility: SIGTERM always stops here
    touch_reload: tuple[str, ...] = ()
    # Run as (names or numbers): the master drops root after binding and writing the
    # pidfile, before the app loads (appserver.privileges).
    uid: str | None = None
    gid: str | None = None

    # Requests.
    buffer_size: int = 4096  # largest uwsgi vars block / HTTP header block accepted
    post_buffering: int = 0  # bodies above this many bytes go to a temp file first; 0 = stream
    socket_timeout: int = 4  # seconds for one read or write on a client socket
    http_keepalive: int = 5  # seconds an idle HTTP keep-alive connection is kept; 0 = close
    # Per-request deadlines on top of socket-timeout (which bounds one read): a client
    # that trickles its head or body cannot hold a thread for longer.  0 = off.
    request_header_timeout: int = 10  # seconds for the whole head (HTTP headers / uwsgi vars)
    request_body_timeout: int = 30  # seconds for the body, + 1 s per KiB received
    static_maps: tuple[tuple[str, str], ...] = ()  # (URL prefix, directory)

    # Control and observation.
    pidfile: str | None = None
    daemonize: str | None = None  # log file; the server detaches
    logto: str | None = None  # log file, no detaching
    log_format: str | None = None  # None = uWSGI's line; "json"; or a %(var) template
    disable_logging: bool = False  # no per-request lines
    log_traceback: bool = True  # an app exception's traceback follows its summary line
    log_drains: tuple[str, ...] = ()  # regexps: matching log lines are dropped
    log_encoders: tuple[tuple[str, str], ...] = ()  # (encoder, args), applied in order
    log_req_encoders: tuple[tuple[str, str], ...] = ()  # the same for request lines
    stats: str | None = None  # address of the JSON stats server
    metrics_http: str | None = None  # address of /metrics, /status, /status.json (TCP)
    vacuum: bool = False

    # Where this config came from: the ini file (for messages) and the argv that
    # built it (a graceful reload re-reads the same sources).
    config_file: str | None = None
    argv: tuple[str, ...] = field(default=(), compare=False)

    @property
    def concurrency(self) -> int:
        """Requests in flight at once: processes × threads."""
        return self.processes * self.threads
