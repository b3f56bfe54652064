"""Run Debian's real nginx as a test peer, with a config written for the test.

nginx runs in the foreground (``daemon off``) with every path inside the
test's directory, so it needs no root-owned state and leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
UWSGI_PARAMS = Path("/etc/nginx/uwsgi_params")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_available() -> bool:
    return Path(NGINX).exists() and UWSGI_PARAMS.exists()


class Nginx:
    def __init__(self, directory: Path, server_block: str, listen_options: str = "") -> None:
        self.directory = directory
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "uwsgi_params").write_text(UWSGI_PARAMS.read_text())
        self.conf = directory / "nginx.conf"
        # As root, nginx's workers would drop to "nobody" and could not write their
        # temp files in the test's directory.
        user = "user root root;" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"""
{user}
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {directory}/access.log;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    uwsgi_temp_path {directory}/uwsgi;
    fastcgi_temp_path {directory}/fastcgi;
    scgi_temp_path {directory}/scgi;
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{self.port} {listen_options};
        {server_block.replace("PARAMS", str(directory / "uwsgi_params"))}
    }}
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        with open(self.directory / "stderr.log", "wb") as stderr:
            self.proc = subprocess.Popen(
                [NGINX, "-c", str(self.conf), "-p", str(self.directory)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not start: {self.error_log()}") from None
                time.sleep(0.05)

    def error_log(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
