"""A real WebSocket echo server (the ``websockets`` library) for edge's Upgrade tests.

Prints ``listening on PORT`` once bound.  Echoes every message; ``close-me``
makes the server close the connection (code 4000); ``silence`` makes it stop
answering, so the proxy's idle timeout has to end the tunnel.
"""

from __future__ import annotations

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, serve


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        if message == "close-me":
            await connection.close(4000, "server says bye")
            return
        if message == "silence":
            await asyncio.sleep(3600)
        await connection.send(message)


async def main() -> None:
    async with serve(echo, "127.0.0.1", 0, max_size=8 * 1024 * 1024, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on {port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
