"""compose.yaml with its ``postgres`` profile: the stack of ``make up-postgres``, for tests.

``PostgresComposeTopology`` is ``ComposeTopology`` (tests/support/topology.py)
with the profile switched on and every Django service pointed at the
``postgres`` service through ``DATABASE_URL``, under its own project name and
a random password.  The database image is ``WSGISTACK_POSTGRES_IMAGE`` (default
``wsgistack/postgres:15``, ``make postgres-image``); like the app image, a
missing one is a failure, never a skip, and the tests never build it.

It also has what the tests need that the plain topology has not: SQL run in
the database container, a replica restart as ``docker restart`` does it, and a
slow upload whose progress the test can wait on.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.topology import ComposeTopology, TopologyError

DEFAULT_POSTGRES_IMAGE = "wsgistack/postgres:15"
DATABASE = "wsgistack"  # compose.yaml's POSTGRES_USER and POSTGRES_DB


def postgres_image() -> str:
    return os.environ.get("WSGISTACK_POSTGRES_IMAGE") or DEFAULT_POSTGRES_IMAGE


class PostgresComposeTopology(ComposeTopology):
    mode = "compose+postgres"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.project = f"wsgistack-postgres-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.postgres_image = postgres_image()
        self.password = secrets.token_hex(16)
        for name in list(self.env):
            if name.startswith("POSTGRES_") or name == "DATABASE_URL":
                del self.env[name]
        self.env.update(
            COMPOSE_PROFILES="postgres",
            WSGISTACK_POSTGRES_IMAGE=self.postgres_image,
            POSTGRES_PASSWORD=self.password,
            DATABASE_URL=f"postgres://{DATABASE}:{self.password}@postgres:5432/{DATABASE}",
            # A throwaway cluster: initdb need not fsync (about 5 s less here).
            POSTGRES_INITDB_ARGS="--no-sync",
        )

    def preflight(self) -> None:
        super().preflight()
        found = self.docker("image", "inspect", self.postgres_image, check=False)
        if found.returncode != 0:
            raise TopologyError(
                f"image {self.postgres_image} not found: run `make postgres-image` first "
                "(or set WSGISTACK_POSTGRES_IMAGE); the tests never build or pull it"
            )

    def postgres_container(self) -> str:
        running = [c.name for c in self.containers("postgres") if c.running]
        if len(running) != 1:
            raise TopologyError(f"expected one running postgres container, got {running}")
        return running[0]

    def psql(self, sql: str) -> list[str]:
        """Rows of ``sql`` run as the service's user over the container's Unix socket."""
        result = self.docker(
            "exec", self.postgres_container(),
            "psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
            "-U", DATABASE, "-d", DATABASE, "-c", sql,
        )  # fmt: skip
        return [line for line in result.stdout.splitlines() if line]

    def wait_for_postgres(self, timeout: float = 60.0) -> None:
        """Until the server accepts TCP connections, as the Django services make them."""
        deadline = time.monotonic() + timeout
        while True:
            probe = self.docker(
                "exec", self.postgres_container(),
                "pg_isready", "-q", "-h", "127.0.0.1", "-U", DATABASE, "-d", DATABASE,
                check=False,
            )  # fmt: skip
            if probe.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TopologyError(f"PostgreSQL did not accept connections in {timeout:.0f} s")
            time.sleep(0.25)

    def restart(self, container: str) -> None:
        """``docker restart``: the stop signal and grace period, then a start."""
        self.docker("restart", "--time", "30", container, timeout=90)


@dataclass
class UploadResult:
    status: int | None = None
    body: bytes = b""
    served_by: str | None = None
    error: str | None = None
    finished: float = 0.0  # time.monotonic()


class SlowUpload:
    """One POST of ``size`` random bytes, sent in paced chunks on its own thread.

    ``started`` is set once ``sent_before_ready`` bytes have left the client:
    edge streams a Content-Length body to the appserver as it arrives, so by
    then a replica holds the request and the rest is still to come.
    """

    def __init__(
        self, port: int, path: str, *, size: int, chunk: int = 64 * 1024, pause: float = 0.05
    ) -> None:
        self.port = port
        self.path = path
        self.payload = os.urandom(size)
        self.sha256 = hashlib.sha256(self.payload).hexdigest()
        self.chunk = chunk
        self.pause = pause
        self.sent = 0
        self.sent_before_ready = 1024 * 1024
        self.started = threading.Event()
        self.result = UploadResult()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def seconds(self) -> float:
        """About how long the body takes to send."""
        return len(self.payload) / self.chunk * self.pause

    def start(self) -> SlowUpload:
        self._thread.start()
        return self

    def wait_started(self, timeout: float = 30.0) -> None:
        if not self.started.wait(timeout):
            raise AssertionError(
                f"the upload did not get under way in {timeout:.0f} s: {self.result}"
            )

    def join(self, timeout: float) -> UploadResult:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the upload did not finish in {timeout:.0f} s")
        return self.result

    def _chunks(self) -> Iterator[bytes]:
        view = memoryview(self.payload)
        for offset in range(0, len(view), self.chunk):
            piece = bytes(view[offset : offset + self.chunk])
            yield piece
            self.sent += len(piece)
            if self.sent >= self.sent_before_ready:
                self.started.set()
            time.sleep(self.pause)  # pacing the client, not waiting for the server

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=90)
        try:
            conn.request(
                "POST",
                self.path,
                body=self._chunks(),
                headers={
                    "Connection": "close",
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(self.payload)),
                },
            )
            response = conn.getresponse()
            self.result.status = response.status
            self.result.served_by = response.getheader("X-Served-By")
            self.result.body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.result.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.result.finished = time.monotonic()
            self.started.set()  # never leave a waiter hanging on a failed upload
            conn.close()
