"""The stats server's JSON, in the shape uWSGI's stats server emits.

uwsgitop (and other tools written for uWSGI) connect, read until EOF and
parse one JSON document; the keys and units here are uWSGI's: ``avg_rt`` and
``running_time`` in microseconds, ``rss``/``vsz`` in bytes, ``last_spawn`` in
epoch seconds, and ``listen_queue`` read from the kernel: TCP_INFO on a
listening TCP socket reports the accept queue's length and limit, and for a
unix socket the sock_diag netlink interface does (what ``ss -xl`` shows as
Recv-Q and Send-Q).  The metrics server (``appserver.metrics``) reads the
same figures.

``build_stats`` takes plain data (what the master read from its listeners,
the scoreboard and /proc) and only shapes it, so it knows nothing of the
master and is tested without one.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appserver import __version__
from appserver import scoreboard as sb
from appserver.scoreboard import WorkerSnapshot

# struct tcp_info: 8 single bytes, then u32 fields; tcpi_unacked is the 5th u32
# (the current accept queue on a listener) and tcpi_sacked the 6th (its limit).
_TCP_INFO_QUEUE = struct.Struct("<8x16xII")


# sock_diag (linux/sock_diag.h, linux/unix_diag.h): one request for one socket by inode.
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_UDIAG_SHOW_RQLEN = 0x10
_UNIX_DIAG_RQLEN = 4
_NO_COOKIE = 0xFFFFFFFF
_NLMSG = struct.Struct("=IHHII")  # length, type, flags, seq, pid
_UNIX_DIAG_REQ = struct.Struct("=BBHIIIII")  # family, protocol, pad, states, ino, show, cookie
_UNIX_DIAG_MSG_SIZE = 16  # family, type, state, pad, inode, cookie
_TCP_LISTEN = 10  # a unix socket's state uses TCP's numbers
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_RQLEN = struct.Struct("=II")  # for a listener: queue length, backlog


def unix_listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(queued, backlog) of a listening unix socket from sock_diag; None if unavailable."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
            diag.settimeout(1.0)
            request = _UNIX_DIAG_REQ.pack(
                socket.AF_UNIX, 0, 0, 0xFFFFFFFF, inode, _UDIAG_SHOW_RQLEN, _NO_COOKIE, _NO_COOKIE
            )
            header = _NLMSG.pack(
                _NLMSG.size + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0
            )
            diag.sendto(header + request, (0, 0))
            data = diag.recv(8192)
        length, kind, _, _, _ = _NLMSG.unpack_from(data)
        if kind == _NLMSG_ERROR or data[_NLMSG.size + 2] != _TCP_LISTEN:
            return None  # udiag_state: only a listener's queue is an accept queue
        offset = _NLMSG.size + _UNIX_DIAG_MSG_SIZE
        while offset + _ATTR.size <= min(length, len(data)):
            size, attribute = _ATTR.unpack_from(data, offset)
            if size < _ATTR.size:
                return None
            if attribute == _UNIX_DIAG_RQLEN:
                queued, backlog = _RQLEN.unpack_from(data, offset + _ATTR.size)
                return queued, backlog
            offset += (size + 3) & ~3
    except (OSError, struct.error, AttributeError):
        return None  # AttributeError: no AF_NETLINK (not Linux)
    return None


def listen_queue(sock: socket.socket) -> tuple[int, int]:
    """(connections waiting to be accepted, backlog limit) of a listener; (0, 0) if unknown."""
    if sock.family == socket.AF_UNIX:
        return unix_listen_queue(sock) or (0, 0)
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0, 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        unacked, sacked = _TCP_INFO_QUEUE.unpack_from(info)
    except (OSError, struct.error):
        return 0, 0
    return unacked, sacked


@dataclass(frozen=True, slots=True)
class SocketStats:
    name: str  # the address bound
    proto: str
    queue: int  # connections waiting in the kernel's accept queue
    max_queue: int  # that queue's limit


@dataclass(frozen=True, slots=True)
class WorkerStats:
    worker_id: int
    pid: int
    signalled: bool  # told to stop, still finishing
    snapshot: WorkerSnapshot
    rss: int  # bytes
    vsz: int  # bytes


@dataclass(frozen=True, slots=True)
class MasterStats:
    pid: int
    uid: int
    gid: int
    cwd: str
    started_at: float  # epoch seconds


def socket_stats(name: str, proto: str, sock: socket.socket, backlog: int) -> SocketStats:
    """One listener's entry, with its accept queue read from the kernel."""
    queue, limit = listen_queue(sock)
    return SocketStats(name, proto, queue, limit or backlog)


def memory(pid: int) -> tuple[int, int]:
    """(rss, vsz) of ``pid`` in bytes; (0, 0) if it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            fields = statm.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        return int(fields[1]) * page, int(fields[0]) * page
    except (OSError, ValueError, IndexError):
        return 0, 0


def build_stats(
    master: MasterStats,
    sockets: Sequence[SocketStats],
    workers: Sequence[WorkerStats],
    now: float,
) -> dict[str, Any]:
    """uWSGI's stats document from plain data (the master gathers it; this only shapes it)."""
    socket_entries = [
        {
            "name": entry.name,
            "proto": entry.proto,
            "queue": entry.queue,
            "max_queue": entry.max_queue,
            "shared": 0,
            "can_offload": 0,
        }
        for entry in sockets
    ]
    worker_entries = []
    for worker in workers:
        snapshot = worker.snapshot
        cores = []
        requests = exceptions = tx = 0
        rt_total = 0.0
        busy = False
        for core_id, core in enumerate(snapshot.cores):
            requests += core.requests
            exceptions += core.exceptions
            tx += core.tx
            rt_total += core.response_time_total
            in_request = 1 if core.busy_since else 0
            busy = busy or bool(in_request)
            cores.append(
                {
                    "id": core_id,
                    "requests": core.requests,
                    "static_requests": core.static_requests,
                    "routed_requests": 0,
                    "offloaded_requests": 0,
                    "write_errors": 0,
                    "read_errors": 0,
                    "in_request": in_request,
                    "vars": [core.request_line] if in_request else [],
                    "req_info": {"request_start": int(core.busy_since)} if in_request else {},
                }
            )
        if snapshot.state == sb.STOPPING or worker.signalled:
            status = "sig"
        elif busy:
            status = "busy"
        else:
            status = "idle"
        worker_entries.append(
            {
                "id": worker.worker_id,
                "pid": worker.pid,
                "accepting": 1 if snapshot.state == sb.READY else 0,
                "requests": requests,
                "delta_requests": 0,
                "exceptions": exceptions,
                "harakiri_count": snapshot.harakiri_count,
                "signals": 0,
                "signal_queue": 0,
                "status": status,
                "rss": worker.rss,
                "vsz": worker.vsz,
                "running_time": int(rt_total * 1_000_000),
                "last_spawn": int(snapshot.spawned_at),
                "respawn_count": snapshot.respawns,
                "tx": tx,
                "avg_rt": int(rt_total / requests * 1_000_000) if requests else 0,
                "apps": [],
                "cores": cores,
            }
        )
    return {
        "version": f"appserver-{__version__}",
        "listen_queue": sum(entry.queue for entry in sockets),
        "listen_queue_errors": 0,
        "signal_queue": 0,
        "load": 0,
        "pid": master.pid,
        "uid": master.uid,
        "gid": master.gid,
        "cwd": master.cwd,
        "started_at": int(master.started_at),
        "time": int(now),
        "locks": [],
        "sockets": socket_entries,
        "workers": worker_entries,
    }


def render_stats(
    master: MasterStats,
    sockets: Sequence[SocketStats],
    workers: Sequence[WorkerStats],
    now: float,
) -> bytes:
    return json.dumps(build_stats(master, sockets, workers, now)).encode()
