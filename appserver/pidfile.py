"""The master's pidfile: written atomically, read strictly, removed only if still ours.

``appserver --stop/--reload PIDFILE`` and the master share this module, so the
file format (the decimal pid and a newline) lives in one place.
"""

from __future__ import annotations

import os
import signal


class PidfileError(Exception):
    """A pidfile that cannot be used: the message is one line naming the file."""


def write_pidfile(path: str, pid: int | None = None) -> None:
    """Write ``pid`` (default: ours) so that readers never see a half-written file."""
    pid = os.getpid() if pid is None else pid
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="ascii") as file:
            file.write(f"{pid}\n")
        os.chmod(temporary, 0o644)
        # rename() within one directory is atomic: the old file or the new one, never neither.
        os.replace(temporary, path)
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def read_pidfile(path: str) -> int:
    """The pid in ``path``; ``PidfileError`` if it is missing, empty or not a pid."""
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read().strip()
    except OSError as exc:
        raise PidfileError(f"cannot read pidfile {path!r}: {exc.strerror}") from None
    if not text:
        raise PidfileError(f"pidfile {path!r} is empty")
    # Refuse 0 and negatives: kill(0) signals our own process group, kill(-1) everyone.
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise PidfileError(f"pidfile {path!r} does not contain a process id: {text[:40]!r}")
    return int(text)


def remove_pidfile(path: str, pid: int | None = None) -> bool:
    """Remove ``path`` if it still names ``pid`` (default: ours); True if removed.

    A new master may already have replaced the file (a re-exec, or a second
    instance started by mistake): deleting its pidfile would orphan it.
    """
    pid = os.getpid() if pid is None else pid
    try:
        if read_pidfile(path) != pid:
            return False
        os.unlink(path)
    except (PidfileError, FileNotFoundError):
        return False
    return True


def signal_pidfile(path: str, signum: signal.Signals) -> int:
    """Send ``signum`` to the process named in ``path``; returns its pid."""
    pid = read_pidfile(path)
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise PidfileError(
            f"no process {pid} (stale pidfile {path!r}): is appserver running?"
        ) from None
    except PermissionError:
        raise PidfileError(
            f"not permitted to signal process {pid} from pidfile {path!r}: run as the server's user"
        ) from None
    return pid
