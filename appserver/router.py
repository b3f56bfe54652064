"""The ``http`` option: an HTTP front process in front of the workers, as uWSGI's ``--http``.

uWSGI's HTTP router is a separate process that speaks HTTP to clients and the
uwsgi protocol to the workers.  Ours is the project's own edge server, started
in its quick mode (``edge --listen ADDR --proxy uwsgi://unix:PATH``), so the
HTTP parsing, keep-alive, limits and smuggling rules are the edge's, written
once.  The master binds a private unix socket that only the router connects
to; the workers accept on it like on any ``socket``.

The router survives a graceful reload untouched: the private socket is one of
the listeners handed to the re-executed master, so the router never notices
the workers being replaced.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

from appserver.listeners import Listener, bind

ROUTER_PID_ENV = "APPSERVER_ROUTER_PID"
PROTOCOL = "router"  # the listener kind of the private socket (served as uwsgi)


def bind_private_socket(backlog: int) -> Listener:
    directory = tempfile.mkdtemp(prefix="appserver-router-")
    os.chmod(directory, 0o700)
    return bind(PROTOCOL, os.path.join(directory, "uwsgi.sock"), backlog, 0o600)


def private_directory(listener: Listener) -> str:
    return os.path.dirname(str(listener.sock.getsockname()))


def remove_private_directory(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def edge_argv(address: str, private: Listener) -> list[str]:
    listen = "0.0.0.0" + address if address.startswith(":") else address
    upstream = f"uwsgi://unix:{private.sock.getsockname()}"
    return [sys.executable, "-m", "edge", "--workers", "1", "--listen", listen, "--proxy", upstream]


def spawn(address: str, private: Listener) -> int:
    """Fork and exec the edge as the HTTP front for one address; return its pid."""
    argv = edge_argv(address, private)
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    return pid
