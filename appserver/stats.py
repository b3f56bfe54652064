"""The stats server's JSON, in the shape uWSGI's stats server emits.

uwsgitop (and other tools written for uWSGI) connect, read until EOF and
parse one JSON document; the keys and units here are uWSGI's: ``avg_rt`` and
``running_time`` in microseconds, ``rss``/``vsz`` in bytes, ``last_spawn`` in
epoch seconds, and ``listen_queue`` read from the kernel (TCP_INFO on a
listening socket reports the accept queue's length and limit).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

from appserver import __version__
from appserver import scoreboard as sb

if TYPE_CHECKING:
    from appserver.master import Arbiter

# struct tcp_info: 8 single bytes, then u32 fields; tcpi_unacked is the 5th u32
# (the current accept queue on a listener) and tcpi_sacked the 6th (its limit).
_TCP_INFO_QUEUE = struct.Struct("<8x4xIIII")


def listen_queue(sock: socket.socket) -> tuple[int, int]:
    """(connections waiting to be accepted, backlog limit) of a TCP listener; (0, 0) if unknown."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return 0, 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        _, _, unacked, sacked = _TCP_INFO_QUEUE.unpack_from(info)
    except (OSError, struct.error):
        return 0, 0
    return unacked, sacked


def _memory(pid: int) -> tuple[int, int]:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            fields = statm.read().split()
        page = os.sysconf("SC_PAGE_SIZE")
        return int(fields[1]) * page, int(fields[0]) * page
    except (OSError, ValueError, IndexError):
        return 0, 0


def build_stats(arbiter: Arbiter) -> dict[str, Any]:
    now = time.time()
    sockets = []
    total_queue = 0
    for listener in arbiter.listeners:
        queue, limit = listen_queue(listener.sock)
        total_queue += queue
        sockets.append(
            {
                "name": listener.bound,
                "proto": listener.protocol,
                "queue": queue,
                "max_queue": limit or arbiter.config.listen,
                "shared": 0,
                "can_offload": 0,
            }
        )
    workers = []
    for process in sorted(arbiter.workers.values(), key=lambda p: (p.worker_id, p.slot)):
        snapshot = arbiter.board.snapshot(process.slot)
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
        rss, vsz = _memory(process.pid)
        if snapshot.state == sb.STOPPING or process.stop_sent_at is not None:
            status = "sig"
        elif busy:
            status = "busy"
        else:
            status = "idle"
        workers.append(
            {
                "id": process.worker_id,
                "pid": process.pid,
                "accepting": 1 if snapshot.state == sb.READY else 0,
                "requests": requests,
                "delta_requests": 0,
                "exceptions": exceptions,
                "harakiri_count": snapshot.harakiri_count,
                "signals": 0,
                "signal_queue": 0,
                "status": status,
                "rss": rss,
                "vsz": vsz,
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
        "listen_queue": total_queue,
        "listen_queue_errors": 0,
        "signal_queue": 0,
        "load": 0,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": os.getcwd(),
        "started_at": int(arbiter.started_at),
        "time": int(now),
        "locks": [],
        "sockets": sockets,
        "workers": workers,
    }


def render_stats(arbiter: Arbiter) -> bytes:
    return json.dumps(build_stats(arbiter)).encode()
