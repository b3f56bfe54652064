"""Run a throwaway PostgreSQL server from Debian's packages as a test peer.

``initdb`` writes a fresh cluster into a temporary directory and ``pg_ctl``
starts it on 127.0.0.1 (a free port) with its Unix socket in that directory,
so it touches no system cluster and leaves nothing behind.  PostgreSQL refuses
to run as root: as root, every server command runs as the ``postgres`` system
user (created by the Debian package) through ``runuser``, and the directory is
handed to that user.

The server is not optional: when PostgreSQL is missing the test fails with a
message saying what to install (.ci/run installs it); it never skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

BIN_GLOB = "/usr/lib/postgresql/*/bin"
SYSTEM_USER = "postgres"
RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"
NEEDED = ("initdb", "pg_ctl", "psql")
INSTALL_HINT = (
    "install Debian's PostgreSQL server (`apt-get install postgresql`; .ci/run does) "
    "and the driver (`pip install -e '.[test]'`, which pulls psycopg[binary])"
)


def _version(bindir: str) -> tuple[int, ...]:
    name = Path(bindir).parent.name  # /usr/lib/postgresql/15/bin -> "15"
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (0,)


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/VERSION/bin holding initdb, pg_ctl and psql."""
    for bindir in sorted(glob.glob(BIN_GLOB), key=_version, reverse=True):
        if all(os.access(Path(bindir, tool), os.X_OK) for tool in NEEDED):
            return Path(bindir)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster in a private directory; ``start()`` then ``stop()`` (or use ``running_postgres``)."""

    def __init__(
        self,
        bindir: Path,
        *,
        user: str = "shop",
        password: str = "shop-test-password",
        database: str = "shop",
    ) -> None:
        self.bindir = bindir
        self.user = user
        self.password = password
        self.database = database
        self.host = "127.0.0.1"
        self.port = 0
        self.as_root = os.geteuid() == 0
        # Not under pytest's tmp_path: that lives in a 0700 root directory the
        # postgres user cannot enter.
        self.directory = Path(tempfile.mkdtemp(prefix="wsgistack-pg-"))
        self.data = self.directory / "data"
        self.socket_dir = self.directory / "socket"
        self.log_path = self.directory / "server.log"
        self.started = False

    # -- commands ------------------------------------------------------------

    def _run(
        self, tool: str, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bindir / tool), *args]
        if self.as_root:
            argv = [RUNUSER, "-u", SYSTEM_USER, "--", *argv]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.directory,
            # psql must not read ~/.psqlrc or PG* settings of whoever runs pytest.
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "PSQLRC": "/dev/null",
            },
        )
        if result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\nserver log:\n{self.log()}"
            )
        return result

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> PostgresServer:
        self.socket_dir.mkdir()
        if self.as_root:
            try:
                account = pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise AssertionError(
                    f"running as root but there is no {SYSTEM_USER!r} system user to run "
                    f"PostgreSQL as (the Debian package creates it); {INSTALL_HINT}"
                ) from None
            for path in (self.directory, self.socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        os.chmod(self.directory, 0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            # Superuser over the Unix socket (in our private 0700 directory);
            # everything over TCP must give a password, as in production.
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        )
        for _attempt in range(3):
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host}"
                # A throwaway cluster: durability only costs time.
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run(
                    "pg_ctl",
                    "start",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log_path),
                    "-w",
                    "-t",
                    "30",
                    "-o",
                    options,
                )
            except AssertionError:
                if "already in use" in self.log():  # lost a race for the port
                    continue
                raise
            self.started = True
            break
        else:
            raise AssertionError(f"PostgreSQL could not bind a port; log:\n{self.log()}")
        self._create_role_and_database()
        return self

    def _create_role_and_database(self) -> None:
        # Identifiers and the password are ours and plain; psql's :'var' quoting
        # still keeps the SQL honest.
        self.psql(
            f"CREATE ROLE {self.user} LOGIN PASSWORD :'password';\n"
            f"CREATE DATABASE {self.database} OWNER {self.user};\n",
            variables={"password": self.password},
        )

    def psql(self, sql: str, *, variables: dict[str, str] | None = None) -> str:
        """Run SQL as the superuser over the Unix socket; returns psql's unaligned output."""
        args = ["-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres"]
        args += ["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-X", "-A", "-t", "-q"]
        for name, value in (variables or {}).items():
            args += ["-v", f"{name}={value}"]
        return self._run("psql", *args, input=sql).stdout

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "30")
                self.started = False
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- what clients need ---------------------------------------------------

    @property
    def url(self) -> str:
        """``DATABASE_URL`` for the sample project (TCP with a password, like production)."""
        return (
            f"postgres://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"
            "?connect_timeout=5"
        )

    @property
    def conninfo(self) -> str:
        """A libpq connection string for psycopg in the test itself."""
        return (
            f"host={self.host} port={self.port} dbname={self.database} "
            f"user={self.user} password={self.password} connect_timeout=5"
        )


@contextmanager
def running_postgres(**kwargs: str) -> Iterator[PostgresServer]:
    """A started server for the ``with`` block; stopped and deleted afterwards.

    Fails the test (never skips) when PostgreSQL or psycopg is missing.
    """
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(f"PostgreSQL not found (no {BIN_GLOB}/initdb); {INSTALL_HINT}", pytrace=False)
    try:
        import psycopg  # noqa: F401
    except ImportError as error:
        pytest.fail(f"the psycopg driver is not installed ({error}); {INSTALL_HINT}", pytrace=False)
    if os.geteuid() == 0 and not os.access(RUNUSER, os.X_OK):
        pytest.fail(f"running as root needs {RUNUSER} (util-linux) to drop to {SYSTEM_USER}")
    server = PostgresServer(bindir, **kwargs)
    try:
        server.start()
        yield server
    finally:
        server.stop()
