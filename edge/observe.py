"""What one worker tells the others about its state: the snapshot in its metrics slot.

Counters are cells that every worker increments in place (``edge.metrics``);
states cannot be added up that way, so each worker describes them in a small
JSON document and writes it into its slot once a second (``publish_forever``,
a task of the worker's loop) and again right before it answers a scrape or a
status page itself.  The snapshot holds:

- ``connections``: this worker's connections by stub_status phase;
- ``peers``: each upstream peer as this worker's balancer sees it (passive
  health is per worker, as in nginx without a ``zone``);
- ``errors``: the last lines the worker wrote at ``warn`` or worse.

Publishing costs a scan of the worker's connections and peers per second,
nothing per request.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from edge.metrics import PUBLISH_INTERVAL

if TYPE_CHECKING:
    from edge.state import ServerState


def peer_states(state: ServerState) -> list[dict[str, Any]]:
    runtime = state.handlers.runtime
    if runtime is None:
        return []
    now = runtime.clock()
    peers = []
    for name, group in runtime.groups.items():
        for peer in group.balancer.peers:
            peers.append(
                {
                    "upstream": name,
                    "peer": str(peer.endpoint),
                    "server": peer.server,
                    "up": not peer.down and not peer.failed_out(now),
                    "down": peer.down,
                    "backup": peer.backup,
                    "fails": peer.fails,
                    "conns": peer.conns,
                }
            )
    return peers


def worker_snapshot(state: ServerState) -> dict[str, Any]:
    reading, writing, waiting = state.connection_phases()
    return {
        "pid": os.getpid(),
        "generation": state.metrics.generation,
        "time": time.time(),
        "connections": {
            "active": len(state.connections),
            "reading": reading,
            "writing": writing,
            "waiting": waiting,
        },
        "peers": peer_states(state),
        "errors": [list(entry) for entry in state.error_log.recent],
    }


def publish(state: ServerState) -> None:
    state.metrics.publish(worker_snapshot(state))


async def publish_forever(state: ServerState, interval: float = PUBLISH_INTERVAL) -> None:
    """The worker's publisher task; a failure is logged and the next round tries again."""
    while True:
        try:
            publish(state)
        except Exception as exc:  # a task boundary: never let the metrics stop the worker
            state.error_log.log("alert", f"cannot publish the worker's metrics: {exc!r}")
        await asyncio.sleep(interval)
