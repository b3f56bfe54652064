"""The pieces around the protocol: error-log lines, listeners, worker counts, the CLI,
and one real loopback socket to prove the zero-copy path of the stdlib loop."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import textwrap
from functools import partial
from pathlib import Path

import pytest

from edge.cli import main
from edge.config.load import parse_config
from edge.config.schema import EdgeConfig, ErrorLogSettings, Listen, Server
from edge.errorlog import ErrorLog, LogFile, request_context
from edge.master import worker_count
from edge.protocol import HttpConnection
from edge.server import ListenError, ServerState, bind_listen

# --- error log ----------------------------------------------------------------------------


def test_error_log_line_layout_level_filter_and_traceback(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    log = ErrorLog(ErrorLogSettings(path=str(path), level="warn"))
    context = request_context(
        client="10.0.0.1",
        server="example.com",
        request="GET / HTTP/1.1",
        upstream="uwsgi://10.0.0.5:3031",
        host="example.com",
    )
    log.log("error", "upstream timed out", connection=7, context=context)
    log.log("info", "hidden at warn")
    log.log("notice", "shown anyway", always=True)
    try:
        raise ValueError("boom")
    except ValueError as exc:
        log.log("alert", "with traceback", exc=exc)
    log.log("warn", "line\nbreak from a client")
    lines = path.read_text().splitlines()
    assert re.fullmatch(
        r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[error\] \d+#0: \*7 upstream timed out, "
        r'client: 10\.0\.0\.1, server: example\.com, request: "GET / HTTP/1\.1", '
        r'upstream: "uwsgi://10\.0\.0\.5:3031", host: "example\.com"',
        lines[0],
    )
    assert "hidden" not in path.read_text()
    assert lines[1].endswith(f"[notice] {os.getpid()}#0: shown anyway")
    assert lines[2].endswith("with traceback") and lines[3] == "Traceback (most recent call last):"
    assert "ValueError: boom" in lines[-2]
    assert lines[-1].endswith("line\\nbreak from a client")


def test_log_files_reopen_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = LogFile(str(path))
    log.write_line("one")
    path.rename(tmp_path / "access.log.1")
    log.reopen()
    log.write_line("two")
    log.close()
    assert (tmp_path / "access.log.1").read_text() == "one\n"
    assert path.read_text() == "two\n"


# --- listeners and workers ---------------------------------------------------------------


def test_port_zero_is_bound_once_and_shared_by_reuseport_sockets() -> None:
    bound = bind_listen(Listen("127.0.0.1", 0), slots=3)
    try:
        ports = {sock.getsockname()[1] for sock in bound.sockets}
        assert len(bound.sockets) == 3 and len(ports) == 1 and bound.reuseport
        assert [len(bound.for_worker(i, 3)) for i in range(3)] == [1, 1, 1]
        assert [len(bound.for_worker(i, 2)) for i in range(2)] == [2, 1]  # no socket orphaned
        grown = bind_listen(Listen("127.0.0.1", 0), slots=4, existing=bound)
        assert grown is bound and len(bound.sockets) == 4
        assert {sock.getsockname()[1] for sock in bound.sockets} == ports
    finally:
        bound.close()


def test_a_single_socket_is_shared_when_workers_grow_without_reuseport() -> None:
    bound = bind_listen(Listen("127.0.0.1", 0), slots=1)
    try:
        assert not bound.reuseport
        assert bind_listen(Listen("127.0.0.1", 0), slots=4, existing=bound) is bound
        assert bound.for_worker(3, 4) == bound.sockets
    finally:
        bound.close()


def test_a_busy_port_is_a_one_line_error() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        with pytest.raises(ListenError, match=rf"bind\(\) to 127\.0\.0\.1:{port} failed \(98: "):
            bind_listen(Listen("127.0.0.1", port), slots=1)
    finally:
        holder.close()


def test_worker_count_auto_is_the_usable_cpus() -> None:
    auto = EdgeConfig(servers=(Server(),), worker_processes="auto")
    assert worker_count(auto) == len(os.sched_getaffinity(0))
    assert worker_count(EdgeConfig(servers=(Server(),), worker_processes=3)) == 3
    assert worker_count(auto, override=2) == 2


# --- CLI ---------------------------------------------------------------------------------


def test_cli_check_mode_and_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-t", "--listen", "127.0.0.1:0", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "ok\n"
    assert main(["-t", "--static", f"/s={tmp_path}/missing"]) == 1
    assert capsys.readouterr().err.startswith("--static: directory does not exist")
    for argv in ([], ["-c", "x.yaml", "--root", "."], ["--workers", "0", "--root", "."]):
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 2
        capsys.readouterr()


# --- zero-copy on the stdlib loop ----------------------------------------------------------


def test_large_files_use_loop_sendfile_on_the_stdlib_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "big.bin").write_bytes(payload)
    config = parse_config(
        textwrap.dedent(
            f"""
            servers:
              - listen: 127.0.0.1:0
                locations:
                  - path: /
                    root: {tmp_path}
            """
        )
    )
    reads: list[int] = []
    real_pread = os.pread

    def spy(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", spy)  # the copying fallback would call it

    async def scenario() -> bytes:
        loop = asyncio.get_running_loop()
        state = ServerState(
            config,
            error_log=ErrorLog(ErrorLogSettings(path=str(tmp_path / "error.log"))),
            access_log=None,
        )
        await state.handlers.start()
        listen = config.servers[0].listen[0]
        server = await loop.create_server(partial(HttpConnection, state, listen), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /big.bin HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = await reader.read()
        writer.close()
        server.close()
        await state.handlers.close()
        assert state.sendfile_native
        return data

    data = asyncio.run(scenario())
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == payload
    assert not reads
