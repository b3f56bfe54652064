"""Listening sockets: parse uWSGI-style addresses, bind them, hand them across a reload.

Addresses are "host:port", ":port" (all IPv4 interfaces), "[v6addr]:port", or a
unix socket path (anything containing "/" or without a port), as uWSGI reads
them.  The master binds every listener once; workers inherit them by fork, and
a graceful reload re-executes the master with the same file descriptors so
the kernel's accept queues are never closed (no connection is refused).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
import sys
from dataclasses import dataclass, field

from appserver.config import AppServerConfig

INHERIT_ENV = "APPSERVER_LISTEN_FDS"


class ListenerError(Exception):
    """A listener that cannot be bound; the message is one line."""


@dataclass(slots=True)
class Listener:
    protocol: str  # "uwsgi" or "http"
    address: str  # as configured
    sock: socket.socket
    # Read once: socket.family builds an enum member on every access.
    tcp: bool = field(init=False)
    # Accepted sockets come with TCP_NODELAY and the socket-timeout already set (Linux
    # copies them from the listening TCP socket): see prepare_listener.
    inherits_client_options: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.tcp = self.sock.family != socket.AF_UNIX

    @property
    def is_unix(self) -> bool:
        return not self.tcp

    @property
    def bound(self) -> str:
        """The address actually bound (port 0 becomes the real port)."""
        if self.is_unix:
            return str(self.sock.getsockname())
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def display(self) -> str:
        scheme = "uwsgi" if self.protocol == "uwsgi" else "http"
        return f"{scheme}://{'unix:' if self.is_unix else ''}{self.bound}"

    @property
    def server_name_port(self) -> tuple[str, str]:
        if self.is_unix:
            return "localhost", "80"
        host, port = self.sock.getsockname()[:2]
        return host, str(port)


def parse_address(text: str) -> tuple[socket.AddressFamily, str | tuple[str, int]]:
    if text.startswith("unix:"):
        return socket.AF_UNIX, text[5:]
    if "/" in text or ":" not in text:
        return socket.AF_UNIX, text
    host, _, port_text = text.rpartition(":")
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ListenerError(f"{text}: port must be a number from 0 to 65535")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        return socket.AF_INET6, (host[1:-1], port)
    if not host or host == "*":
        return socket.AF_INET, ("0.0.0.0", port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenerError(f"{text}: cannot resolve {host!r}: {exc.strerror}") from exc
    family, _, _, _, sockaddr = infos[0]
    return family, (str(sockaddr[0]), port)


def bind(protocol: str, address: str, backlog: int, chmod: int | None) -> Listener:
    family, sockaddr = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            assert isinstance(sockaddr, str)
            _remove_stale_unix_socket(sockaddr)
            sock.bind(sockaddr)
            if chmod is not None:
                os.chmod(sockaddr, chmod)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        # The option the address came from: socket, http-socket, or the caller's (stats, ...).
        option = {"uwsgi": "socket", "http": "http-socket"}.get(protocol, protocol)
        raise ListenerError(f"{option} {address}: cannot bind: {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return Listener(protocol, address, sock)


def _remove_stale_unix_socket(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # nobody listens: left behind by a server that died
        return
    except OSError:
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another server is listening on it")


def bind_all(config: AppServerConfig) -> list[Listener]:
    listeners: list[Listener] = []
    try:
        for address in config.sockets:
            listeners.append(bind("uwsgi", address, config.listen, config.chmod_socket))
        for address in config.http_sockets:
            listeners.append(bind("http", address, config.listen, config.chmod_socket))
    except ListenerError:
        for listener in listeners:
            listener.sock.close()
        raise
    return listeners


def export(listeners: list[Listener]) -> str:
    """Describe the listeners for a re-executed master, and make their fds survive exec."""
    parts = []
    for listener in listeners:
        fd = listener.sock.fileno()
        os.set_inheritable(fd, True)
        parts.append(f"{fd}|{listener.protocol}|{listener.address}")
    return ";".join(parts)


def inherit(spec: str) -> list[Listener]:
    listeners = []
    for part in spec.split(";"):
        if not part:
            continue
        fd_text, protocol, address = part.split("|", 2)
        sock = socket.socket(fileno=int(fd_text))
        os.set_inheritable(sock.fileno(), False)
        sock.setblocking(False)
        listeners.append(Listener(protocol, address, sock))
    return listeners


def adopt(config: AppServerConfig, inherited: list[Listener]) -> list[Listener]:
    """Reuse the inherited sockets the config still names; bind new ones; close the rest."""
    wanted = [("uwsgi", a) for a in config.sockets] + [("http", a) for a in config.http_sockets]
    by_key = {(listener.protocol, listener.address): listener for listener in inherited}
    result = []
    if config.http:
        # The private socket of the HTTP front (appserver.router) outlives reloads.
        for key in [key for key in by_key if key[0] == "router"]:
            result.append(by_key.pop(key))
    try:
        for protocol, address in wanted:
            listener = by_key.pop((protocol, address), None)
            if listener is None:
                listener = bind(protocol, address, config.listen, config.chmod_socket)
            result.append(listener)
    finally:
        for leftover in by_key.values():
            leftover.sock.close()
    return result


def close_all(listeners: list[Listener], vacuum: bool) -> None:
    for listener in listeners:
        path = listener.sock.getsockname() if listener.is_unix else None
        listener.sock.close()
        if vacuum and path:
            try:
                os.unlink(path)
            except OSError:
                pass


# -- options of client sockets -------------------------------------------------------


def _set_kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """SO_RCVTIMEO/SO_SNDTIMEO: the kernel bounds each blocking recv and send.

    A Python socket timeout does the same with a poll() before every recv and send;
    these cost nothing per call.  An expired one raises BlockingIOError (EAGAIN).
    """
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def prepare_listener(listener: Listener, timeout: float) -> None:
    """Set the client options once on a TCP listening socket, where Linux copies them
    to every accepted socket; elsewhere prepare_client sets them per connection."""
    listener.inherits_client_options = False
    if not listener.tcp or not sys.platform.startswith("linux"):
        return
    try:
        _set_kernel_timeouts(listener.sock, timeout)
        listener.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        return
    listener.inherits_client_options = True


def prepare_client(sock: socket.socket, listener: Listener, timeout: float) -> None:
    """TCP_NODELAY and the socket-timeout for one accepted socket, unless inherited."""
    if listener.inherits_client_options:
        return
    if listener.tcp:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        _set_kernel_timeouts(sock, timeout)
    except OSError:
        sock.settimeout(timeout)
