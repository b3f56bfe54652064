"""A worker's CPU time per request: utime+stime from /proc/<worker>/stat around one load run.

    .venv/bin/python scripts/measure_worker_cpu.py MODE BACKEND [--repo DIR] [--runs N]

MODE: ``nginx`` (wrk -> nginx ``uwsgi_pass`` -> backend), ``http`` (wrk -> ``--http-socket``)
or ``ka`` (32 asyncio connections speaking uwsgi with the WSGISTACK_KEEPALIVE offer: no
edge needed).  BACKEND: ``appserver`` (from ``--repo``, default this checkout, so another
commit can be measured from an exported tree) or ``uwsgi`` (the venv's pip-built uWSGI).
The app is bench/apps/hello_wsgi.py; the backend and nginx run on CPU 1 (taskset), the
load on CPU 0, one worker process, logging off.  Prints req/s and worker µs/request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APPS = REPO / "bench" / "apps"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_backend(
    backend: str, protocol: str, port: int, repo: Path, log: Path
) -> subprocess.Popen:
    address = f"127.0.0.1:{port}"
    if backend == "appserver":
        flag = "--socket" if protocol == "uwsgi" else "--http-socket"
        argv = [
            str(repo / ".venv/bin/python"),
            "-m",
            "appserver",
            flag,
            address,
            "--master",
            "--processes",
            "1",
            "--disable-logging",
            "--listen",
            "1024",
            "--chdir",
            str(APPS),
            "--module",
            "hello_wsgi:application",
        ]
        cwd = repo
    else:
        listen = (
            ["--socket", address]
            if protocol == "uwsgi"
            else ["--http-socket", address, "--add-header", "Connection: close"]
        )
        argv = [
            str(repo / ".venv/bin/uwsgi"),
            *listen,
            "--master",
            "--processes",
            "1",
            "--disable-logging",
            "--listen",
            "1024",
            "--need-app",
            "--virtualenv",
            str(repo / ".venv"),
            "--chdir",
            str(APPS),
            "--module",
            "hello_wsgi:application",
        ]
        cwd = repo
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.Popen(
        ["taskset", "-c", "1", *argv],
        cwd=cwd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def start_nginx(directory: Path, port: int, backend_port: int) -> subprocess.Popen:
    shutil.copyfile("/etc/nginx/uwsgi_params", directory / "uwsgi_params")
    conf = directory / "nginx.conf"
    conf.write_text(f"""user root root;
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {directory}/cb; proxy_temp_path {directory}/p;
    uwsgi_temp_path {directory}/u; fastcgi_temp_path {directory}/f; scgi_temp_path {directory}/s;
    upstream backend {{ server 127.0.0.1:{backend_port}; }}
    server {{ listen 127.0.0.1:{port};
        location / {{ include {directory}/uwsgi_params; uwsgi_pass backend; }} }}
}}
""")
    return subprocess.Popen(
        ["taskset", "-c", "1", "nginx", "-c", str(conf), "-p", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wrk(port: int, duration: int) -> tuple[int, float, str]:
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{duration}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Socket errors:.*|Non-2xx.*", out)
    return requests, rate, errors.group(0) if errors else ""


def keepalive_packet() -> bytes:
    sys.path.insert(0, str(REPO))
    import uwsgiproto

    pairs = [
        ("QUERY_STRING", ""),
        ("REQUEST_METHOD", "GET"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("REQUEST_URI", "/"),
        ("PATH_INFO", "/"),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_PORT", "50000"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "localhost"),
        ("HTTP_HOST", "localhost"),
        ("HTTP_USER_AGENT", "bench"),
        ("WSGISTACK_KEEPALIVE", "1"),
    ]
    return uwsgiproto.encode_packet(pairs)


async def _ka_conn(port: int, packet: bytes, stop: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.monotonic() < stop:
            writer.write(packet)
            head = await reader.readuntil(b"\r\n\r\n")
            if b"Wsgistack-Keepalive" not in head:
                raise RuntimeError(f"not kept alive: {head!r}")
            length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
            await reader.readexactly(length)
            done += 1
    finally:
        counts.append(done)
        writer.close()


def keepalive_load(port: int, duration: int, connections: int = 32) -> tuple[int, float, str]:
    packet = keepalive_packet()
    counts: list[int] = []

    async def main() -> None:
        stop = time.monotonic() + duration
        await asyncio.gather(*(_ka_conn(port, packet, stop, counts) for _ in range(connections)))

    started = time.monotonic()
    asyncio.run(main())
    elapsed = time.monotonic() - started
    return sum(counts), sum(counts) / elapsed, ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["nginx", "http", "ka"])
    parser.add_argument("backend", choices=["appserver", "uwsgi"])
    parser.add_argument("--repo", default=str(REPO))
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", default=None, help="py-spy raw output file")
    args = parser.parse_args()
    repo = Path(args.repo)
    os.sched_setaffinity(0, {0})
    work = Path(tempfile.mkdtemp(prefix="measure-"))
    backend_port = free_port()
    protocol = "http" if args.mode == "http" else "uwsgi"
    backend = start_backend(args.backend, protocol, backend_port, repo, work / "backend.log")
    procs = [backend]
    try:
        wait_port(backend_port)
        time.sleep(1.0)
        kids = children(backend.pid)
        worker = kids[0] if kids else backend.pid
        if args.mode == "nginx":
            port = free_port()
            procs.append(start_nginx(work, port, backend_port))
            wait_port(port)
        else:
            port = backend_port
        if args.mode == "ka":
            load = lambda d: keepalive_load(port, d)  # noqa: E731
        else:
            load = lambda d: wrk(port, d)  # noqa: E731
        load(1)  # warm-up
        for _ in range(args.runs):
            spy = None
            if args.profile:
                spy = subprocess.Popen(
                    [
                        str(repo / ".venv/bin/py-spy"),
                        "record",
                        "-r",
                        "200",
                        "-f",
                        "raw",
                        "-o",
                        args.profile,
                        "-p",
                        str(worker),
                        "-d",
                        str(args.duration + 1),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(0.5)
            before = cpu_ticks(worker)
            requests, rate, errors = load(args.duration)
            after = cpu_ticks(worker)
            if spy is not None:
                spy.wait()
            micros = (after - before) / TICK * 1e6 / max(requests, 1)
            print(
                f"{args.mode:6} {args.backend:9} {rate:9.0f} req/s  {micros:6.1f} us/req  "
                f"({requests} req) {errors}",
                flush=True,
            )
    finally:
        for proc in reversed(procs):
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
