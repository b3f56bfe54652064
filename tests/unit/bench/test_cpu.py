"""CPU per request: /proc parsing, process trees and roles, the arithmetic, and one real tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cpu import (
    CpuUsage,
    Member,
    ProcessCpu,
    ProcStat,
    classify,
    format_per_program,
    parse_stat,
    program_of,
    read_table,
    snapshot,
    tree,
    usage,
)


def stat_line(pid: int, comm: str, ppid: int, session: int, utime: int, stime: int,
              start: int) -> str:  # fmt: skip
    """A /proc/PID/stat line as Linux 6 writes it (52 fields)."""
    fields = ["S", str(ppid), str(pid), str(session), "0", "-1", "4194560"]
    fields += ["0"] * 4 + [str(utime), str(stime)] + ["0"] * 4 + ["1", "0", str(start)]
    fields += ["0"] * (52 - 2 - len(fields))
    return f"{pid} ({comm}) " + " ".join(fields) + "\n"


# -- parsing --------------------------------------------------------------------


def test_parse_stat_fields() -> None:
    parsed = parse_stat(stat_line(4242, "uwsgi", 4240, 4000, utime=150, stime=30, start=98765))
    assert parsed == ProcStat(4242, "uwsgi", 4240, 4000, cpu_ticks=180, start_ticks=98765)


def test_parse_stat_with_spaces_and_parentheses_in_the_comm() -> None:
    # The comm is whatever the process called itself: split at the last ")".
    parsed = parse_stat(stat_line(7, "a) (b c)", 1, 7, utime=1, stime=2, start=3))
    assert (parsed.comm, parsed.ppid, parsed.cpu_ticks, parsed.start_ticks) == ("a) (b c)", 1, 3, 3)


def test_parse_stat_of_this_process() -> None:
    own = parse_stat(Path("/proc/self/stat").read_text())
    assert own.pid == os.getpid()
    assert own.ppid == os.getppid()
    assert own.session == os.getsid(0)
    assert own.cpu_ticks > 0  # this interpreter has run for more than a tick


@pytest.mark.parametrize("text", ["", "12 (x) S 1", "garbage without a comm"])
def test_parse_stat_refuses_what_is_not_a_stat_line(text: str) -> None:
    with pytest.raises(ValueError):
        parse_stat(text)


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["nginx: master process /usr/sbin/nginx -c /tmp/x/nginx.conf"], "nginx"),
        (["nginx: worker process"], "nginx"),
        (["/usr/sbin/nginx", "-c", "conf"], "nginx"),
        (["/venv/bin/python", "-m", "appserver", "--socket", "127.0.0.1:1"], "appserver"),
        (["/venv/bin/python3", "-m", "edge", "--workers", "1", "--listen", ":80"], "edge"),
        (["/venv/bin/python3", "/venv/bin/edge", "-c", "edge.yaml"], "edge"),
        (["/venv/bin/uwsgi", "--http-socket", "127.0.0.1:1"], "uwsgi"),
        (["/venv/bin/python3", "/venv/bin/gunicorn", "-b", "127.0.0.1:1"], "gunicorn"),
        (["gunicorn: worker [hello_wsgi:application]"], "gunicorn"),
        (["/usr/bin/python3", "worker.py"], None),
        ([], None),
    ],
)
def test_program_of(argv: list[str], program: str | None) -> None:
    assert program_of(argv) == program


# -- trees and roles ------------------------------------------------------------


def table(*stats: ProcStat) -> dict[int, ProcStat]:
    return {stat.pid: stat for stat in stats}


def stat(pid: int, ppid: int, session: int = 100, ticks: int = 0) -> ProcStat:
    return ProcStat(pid, "x", ppid, session, ticks, start_ticks=pid * 10)


def test_tree_walks_ppid_links_and_adds_the_session() -> None:
    procs = table(
        stat(1, 0, session=1),
        stat(99, 1, session=99),  # the harness: not part of the server
        stat(100, 99),  # the root the harness started, its own session leader
        stat(102, 100),
        stat(101, 100),
        stat(103, 101),  # a grandchild
        stat(104, 1),  # reparented to init, still in the server's session
        stat(200, 99, session=200),  # another server
    )
    assert [s.pid for s in tree(100, procs)] == [100, 101, 102, 103, 104]
    assert tree(555, procs) == []  # the server is gone


def test_classify_master_and_workers() -> None:
    members = [stat(100, 99), stat(101, 100), stat(102, 100)]
    cmdlines = {
        100: ["nginx: master process nginx -c x"],
        101: ["nginx: worker process"],
        102: ["nginx: worker process"],
    }
    named = classify("nginx", members, cmdlines)
    assert [(m.program, m.role, m.pid) for m in named] == [
        ("nginx", "master", 100),
        ("nginx", "worker", 101),
        ("nginx", "worker", 102),
    ]


def test_classify_a_lone_process_and_a_zombie_child() -> None:
    assert [m.role for m in classify("gunicorn", [stat(100, 99)], {})] == ["process"]
    # A child with no command line (a zombie) inherits its parent's program.
    named = classify("appserver", [stat(100, 99), stat(101, 100)], {101: []})
    assert [(m.program, m.role) for m in named] == [
        ("appserver", "master"),
        ("appserver", "worker"),
    ]


def test_classify_names_a_program_started_inside_another_server() -> None:
    # appserver --http: the master forks a worker and execs an edge router, which forks its own.
    python = "/venv/bin/python"
    appserver = [python, "-m", "appserver", "--http", ":8000"]
    router = [python, "-m", "edge", "--workers", "1", "--listen", ":8000"]
    members = [stat(100, 99), stat(101, 100), stat(102, 100), stat(103, 102)]
    cmdlines = {100: appserver, 101: appserver, 102: router, 103: router}
    named = classify("appserver", members, cmdlines)
    assert [(m.program, m.role) for m in named] == [
        ("appserver", "master"),
        ("appserver", "worker"),
        ("edge under appserver", "master"),
        ("edge under appserver", "worker"),
    ]


# -- arithmetic -----------------------------------------------------------------


def member(program: str, role: str, pid: int, ticks: int, start: int = 1) -> Member:
    return Member(program, role, pid, start, ticks)  # type: ignore[arg-type]


def test_usage_per_request() -> None:
    before = [member("edge", "master", 10, 5), member("edge", "worker", 11, 100)]
    before += [member("appserver", "worker", 21, 40)]
    after = [member("edge", "master", 10, 5), member("edge", "worker", 11, 150)]
    after += [member("appserver", "worker", 21, 60)]
    # 100 ticks a second: 50 ticks = 0.5 s = 500,000 µs over 1,000 requests.
    measured = usage(before, after, requests=1000, ticks_per_s=100)
    assert measured is not None
    assert [p.us_per_request for p in measured.processes] == pytest.approx([0.0, 500.0, 200.0])
    assert measured.per_program() == pytest.approx({"edge": 500.0, "appserver": 200.0})
    assert list(measured.per_program()) == ["edge", "appserver"]  # the order given: front first
    assert measured.lost == ()


def test_usage_counts_a_new_process_whole_and_lists_one_that_ended() -> None:
    before = [member("uwsgi", "worker", 11, 100), member("uwsgi", "worker", 12, 7)]
    # Worker 11 was replaced by a process that reused its pid: a new start time.
    after = [member("uwsgi", "worker", 11, 30, start=2)]
    measured = usage(before, after, requests=100, ticks_per_s=100)
    assert measured is not None
    assert measured.processes == (ProcessCpu("uwsgi", "worker", 11, 3000.0),)
    assert measured.lost == ("uwsgi worker 11", "uwsgi worker 12")


def test_usage_sums_workers_and_leaves_masters_out() -> None:
    measured = CpuUsage(
        (
            ProcessCpu("nginx", "master", 1, 9.0),
            ProcessCpu("nginx", "worker", 2, 20.0),
            ProcessCpu("nginx", "worker", 3, 22.0),
        )
    )
    assert measured.per_program() == pytest.approx({"nginx": 42.0})
    data = measured.to_json()
    assert data["per_program_us"] == {"nginx": 42.0}
    assert [p["role"] for p in data["processes"]] == ["master", "worker", "worker"]


def test_usage_with_nothing_to_divide() -> None:
    some = [member("edge", "worker", 1, 10)]
    assert usage(some, some, requests=0, ticks_per_s=100) is None
    assert usage([], [], requests=10, ticks_per_s=100) is None


def test_format_per_program() -> None:
    assert format_per_program({"edge": 95.4, "appserver": 61.0}) == "edge 95 + appserver 61"
    assert format_per_program({"gunicorn": 1234.5}) == "gunicorn 1,234"
    assert format_per_program({}) == "—"


# -- a real process tree --------------------------------------------------------

# A master that forks one worker; the worker spins until it has used 0.2 s of CPU,
# says so, and waits for stdin to close.
FORKER = """
import os, sys, time
pid = os.fork()
if pid == 0:
    while time.process_time() < 0.2:
        pass
    print("spun", flush=True)
    sys.stdin.read()
    os._exit(0)
print(pid, flush=True)
os.waitpid(pid, 0)
"""


def test_snapshot_of_a_real_master_and_worker() -> None:
    # "-m appserver" lands in sys.argv, so both processes' command lines name the program.
    argv = [sys.executable, "-c", FORKER, "-m", "appserver"]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            worker = int(proc.stdout.readline())
            assert proc.stdout.readline() == "spun\n"
            members = snapshot([("appserver", proc.pid)])
            assert [(m.program, m.role, m.pid) for m in members] == [
                ("appserver", "master", proc.pid),
                ("appserver", "worker", worker),
            ]
            ticks = os.sysconf("SC_CLK_TCK")
            assert members[1].cpu_ticks >= 0.2 * ticks - 1
            assert members[0].cpu_ticks < members[1].cpu_ticks
            assert read_table()[worker].ppid == proc.pid
        finally:
            proc.stdin.close()  # the worker exits, then the master
            proc.wait(timeout=10)
