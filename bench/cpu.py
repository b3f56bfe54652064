"""CPU time per request of every process of a stack, read from ``/proc`` (Linux).

req/s on a shared core mixes every process's cost; CPU time says what each
server spent.  Right before and right after each timed wrk run the harness
takes a ``snapshot`` of every process in the trees of the servers it started,
and ``usage`` turns the two into microseconds of CPU per request wrk counted.

- ``/proc/PID/stat`` of a process counts ``utime + stime`` of all its threads,
  the live ones and those that have exited, in clock ticks
  (``os.sysconf("SC_CLK_TCK")``): a gthread worker needs no per-thread sum.
- A server's processes are found from the PID the harness started: its
  descendants by ``ppid``, plus every process of its session (each server is
  started in a session of its own, so a process that was reparented to init
  still counts).  A process is named by ``(pid, starttime)``, which survives
  PID reuse.
- Each process gets a *program* from its command line (``nginx: worker
  process``, ``python -m edge``, ``uwsgi``, ``gunicorn``): a forked worker
  keeps its parent's command line, and a program started inside another
  server's tree (appserver's ``--http`` runs an edge) is named after both
  ("edge under appserver").  Its *role* is ``worker`` when its parent runs the
  same program, ``master`` when its children do, and ``process`` when it
  works alone.  The workers and lone processes are what a request costs; a
  master only supervises, and is reported apart.
- A process that started during the run is counted whole; one that ended
  during the run took its time with it, and is listed as ``lost``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias

Role: TypeAlias = Literal["master", "worker", "process"]

PROC = Path("/proc")
PROGRAMS = ("nginx", "edge", "appserver", "uwsgi", "gunicorn")


def ticks_per_second() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of one ``/proc/PID/stat`` line that the harness uses."""

    pid: int
    comm: str
    ppid: int
    session: int
    cpu_ticks: int  # utime + stime, over all threads
    start_ticks: int  # starttime: with the pid, names one process across pid reuse


def parse_stat(text: str) -> ProcStat:
    """Parse ``/proc/PID/stat`` (proc(5)); the comm may hold spaces and parentheses."""
    head, _, tail = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = tail.split()
    if not pid_text.strip().isdigit() or len(fields) < 20:
        raise ValueError(f"not a /proc/PID/stat line: {text[:80]!r}")
    # fields[0] is field 3 of proc(5) (state): field n is fields[n - 3].
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        ppid=int(fields[1]),
        session=int(fields[3]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start_ticks=int(fields[19]),
    )


def program_of(argv: Sequence[str]) -> str | None:
    """The server a command line runs, or None (then a process inherits its parent's)."""
    if not argv:
        return None  # a zombie, or a kernel thread
    title = argv[0].lower()
    for name in PROGRAMS:
        # nginx, and gunicorn with setproctitle, rewrite argv[0]: "nginx: worker process".
        if title.startswith(name + ":") or title.startswith(f"[{name}]"):
            return name
    for index, word in enumerate(argv[:-1]):
        if word == "-m" and argv[index + 1] in PROGRAMS:
            return argv[index + 1]
    # A console script run through its shebang: argv is [python, script, ...].
    for word in argv[:2]:
        name = os.path.basename(word)
        if name in PROGRAMS:
            return name
    return None


@dataclass(frozen=True, slots=True)
class Member:
    """One process of a server at one moment."""

    program: str
    role: Role
    pid: int
    start_ticks: int
    cpu_ticks: int


def tree(root: int, table: Mapping[int, ProcStat]) -> list[ProcStat]:
    """``root`` and its descendants, parents before children; plus the rest of its session."""
    if root not in table:
        return []
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    order = [root]
    seen = {root}
    for pid in order:  # grows while it is walked: breadth first
        found = sorted(child for child in children.get(pid, ()) if child not in seen)
        order.extend(found)
        seen.update(found)
    order.extend(sorted(p for p, s in table.items() if s.session == root and p not in seen))
    return [table[pid] for pid in order]


def classify(
    program: str, members: Sequence[ProcStat], cmdlines: Mapping[int, Sequence[str]]
) -> list[Member]:
    """Name each process of one server's tree (root first) by program and role."""
    if not members:
        return []
    root = members[0].pid
    programs: dict[int, str] = {}
    for stat in members:
        inherited = programs.get(stat.ppid, program)
        found = program_of(cmdlines.get(stat.pid, ())) if stat.pid != root else program
        if found is None or found == inherited.split(" under ", 1)[0]:
            programs[stat.pid] = inherited
        else:
            programs[stat.pid] = f"{found} under {program}"
    result = []
    for stat in members:
        name = programs[stat.pid]
        role: Role
        if stat.pid != root and programs.get(stat.ppid) == name:
            role = "worker"
        elif any(s.ppid == stat.pid and programs[s.pid] == name for s in members):
            role = "master"
        else:
            role = "process"
        result.append(Member(name, role, stat.pid, stat.start_ticks, stat.cpu_ticks))
    return result


# -- reading /proc ----------------------------------------------------------------


def read_table(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process's stat line; a process that exits while being read is skipped."""
    table: dict[int, ProcStat] = {}
    try:
        entries = [entry for entry in os.listdir(proc) if entry.isdigit()]
    except OSError:
        return table
    for entry in entries:
        try:
            table[int(entry)] = parse_stat((proc / entry / "stat").read_text())
        except (OSError, ValueError):
            continue
    return table


def read_cmdline(pid: int, proc: Path = PROC) -> list[str]:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [word.decode(errors="replace") for word in raw.split(b"\0") if word]


def snapshot(roots: Sequence[tuple[str, int]], proc: Path = PROC) -> list[Member]:
    """Every process of each (program, root pid) server, in the order given."""
    table = read_table(proc)
    members: list[Member] = []
    for program, root in roots:
        stats = tree(root, table)
        cmdlines = {stat.pid: read_cmdline(stat.pid, proc) for stat in stats}
        members.extend(classify(program, stats, cmdlines))
    return members


# -- arithmetic -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    program: str
    role: Role
    pid: int
    us_per_request: float

    def to_json(self) -> dict[str, Any]:
        return {
            "program": self.program,
            "role": self.role,
            "pid": self.pid,
            "us_per_request": round(self.us_per_request, 2),
        }


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU per request of each process over one timed run."""

    processes: tuple[ProcessCpu, ...]
    lost: tuple[str, ...] = ()  # "program role pid" of processes that ended during the run

    def per_program(self) -> dict[str, float]:
        """µs per request of each program's workers (or lone process), front first."""
        totals: dict[str, float] = {}
        for process in self.processes:
            if process.role != "master":
                totals[process.program] = totals.get(process.program, 0.0) + process.us_per_request
        return totals

    def to_json(self) -> dict[str, Any]:
        return {
            "per_program_us": {name: round(us, 2) for name, us in self.per_program().items()},
            "processes": [process.to_json() for process in self.processes],
            "lost": list(self.lost),
        }


def usage(
    before: Iterable[Member], after: Iterable[Member], requests: int, ticks_per_s: float
) -> CpuUsage | None:
    """CPU µs per request of each process between two snapshots; None if nothing to divide."""
    if requests <= 0 or ticks_per_s <= 0:
        return None
    earlier = {(m.pid, m.start_ticks): m for m in before}
    later = list(after)
    if not later:
        return None
    scale = 1_000_000.0 / ticks_per_s / requests
    processes = []
    for member in later:
        start = earlier.pop((member.pid, member.start_ticks), None)
        ticks = member.cpu_ticks - (start.cpu_ticks if start is not None else 0)
        processes.append(ProcessCpu(member.program, member.role, member.pid, ticks * scale))
    lost = tuple(f"{m.program} {m.role} {m.pid}" for m in earlier.values())
    return CpuUsage(tuple(processes), lost)


def format_per_program(figures: Mapping[str, float]) -> str:
    """``edge 95 + appserver 61`` (µs per request), or an em dash when there are none."""
    if not figures:
        return "—"
    return " + ".join(f"{name} {us:,.0f}" for name, us in figures.items())
