"""``uid`` and ``gid``: the master gives up root once it holds what needs root.

Theory of operation
-------------------
uWSGI's order, which the master follows: bind the sockets, daemonize, open the
log file and write the pidfile as root; then drop privileges; only then load
the application and fork the workers, so no line of the app ever runs as root
and the workers inherit the unprivileged credentials (nothing to drop after
fork, and a kernel parent-death signal set in the worker stays set).

The drop itself, as root:

1. ``setgid(gid)``;
2. the supplementary groups: the user's own (``initgroups``) when ``uid`` is
   set, none when only ``gid`` is;
3. ``setuid(uid)``, which sets the real, effective and saved uid: there is
   no way back, and ``drop_privileges`` checks that ``setuid(0)`` now fails.

``uid`` without ``gid`` takes the user's primary group from the passwd
database (nginx's ``user`` does the same).  uWSGI would keep group 0 (root)
there; a server that leaves its group root has not dropped much, so we do
not.  A numeric ``uid`` with no passwd entry therefore needs ``gid``.

Not running as root, the ids must already be the process's own (a graceful
reload re-executes the already unprivileged master: nothing to do); anything
else is refused, as uWSGI refuses ("cannot setuid() as non-root user").

Every failure is a ``PrivilegeError`` with a one-line message; the master
prints it and exits 1 rather than serve with more rights than configured.
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass


class PrivilegeError(Exception):
    """The configured uid/gid cannot be taken; the message is one line."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """The ids the master should run as; None leaves that id as it is."""

    uid: int | None
    gid: int | None
    user: str | None  # the uid's name, for initgroups and the log (None: no passwd entry)
    group: str | None  # the gid's name, for the log

    @property
    def wanted(self) -> bool:
        return self.uid is not None or self.gid is not None


def resolve(uid: str | None, gid: str | None) -> Credentials:
    """Turn the ``uid`` / ``gid`` options (names or numbers) into ids."""
    user_id = user_name = None
    primary_gid: int | None = None
    if uid is not None:
        try:
            entry = pwd.getpwuid(int(uid)) if uid.isdigit() else pwd.getpwnam(uid)
        except KeyError:
            if not uid.isdigit():
                raise PrivilegeError(f"uid: no such user {uid!r}") from None
            user_id = int(uid)
        else:
            user_id, user_name, primary_gid = entry.pw_uid, entry.pw_name, entry.pw_gid
    group_id = group_name = None
    if gid is not None:
        try:
            group_entry = grp.getgrgid(int(gid)) if gid.isdigit() else grp.getgrnam(gid)
        except KeyError:
            if not gid.isdigit():
                raise PrivilegeError(f"gid: no such group {gid!r}") from None
            group_id = int(gid)
        else:
            group_id, group_name = group_entry.gr_gid, group_entry.gr_name
    elif primary_gid is not None:
        group_id = primary_gid
        group_name = _group_name(primary_gid)
    return Credentials(user_id, group_id, user_name, group_name)


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def describe(ids: Credentials, groups: Iterable[int] = ()) -> str:
    parts = []
    if ids.uid is not None:
        parts.append(f"uid {ids.uid}" + (f" ({ids.user})" if ids.user else ""))
    if ids.gid is not None:
        parts.append(f"gid {ids.gid}" + (f" ({ids.group})" if ids.group else ""))
    extra = sorted(set(groups) - {ids.gid})
    parts.append(
        "supplementary groups " + ", ".join(str(g) for g in extra)
        if extra
        else "no supplementary groups"
    )
    return ", ".join(parts)


def check_reachable(ids: Credentials) -> None:
    """Raise if this process cannot become ``ids`` (not root, and they are not its own)."""
    if os.geteuid() == 0:
        if ids.uid is not None and ids.gid is None:
            raise PrivilegeError(
                f"uid {ids.uid} has no passwd entry, so its group is unknown: set gid as well"
            )
        return
    running = f"running as uid {os.getuid()}, gid {os.getgid()}"
    if ids.gid is not None and ids.gid != os.getgid():
        raise PrivilegeError(f"cannot setgid() to {ids.gid} as a non-root user ({running})")
    if ids.uid is not None and ids.uid != os.getuid():
        raise PrivilegeError(f"cannot setuid() to {ids.uid} as a non-root user ({running})")


def drop_privileges(ids: Credentials) -> str | None:
    """Become ``ids``: gid, then the supplementary groups, then uid.

    Returns the line to log, or None when there was nothing to do (no uid/gid,
    or already running as them without root).
    """
    if not ids.wanted:
        return None
    check_reachable(ids)
    if os.geteuid() != 0:
        return None
    try:
        if ids.gid is not None:
            os.setgid(ids.gid)
            if ids.uid is not None and ids.user is not None:
                os.initgroups(ids.user, ids.gid)
            else:
                os.setgroups([])
        if ids.uid is not None:
            os.setuid(ids.uid)
    except OSError as exc:
        raise PrivilegeError(f"cannot drop privileges to {describe(ids)}: {exc.strerror}") from None
    _verify(ids)
    return f"dropped privileges: now {describe(ids, os.getgroups())}"


def _verify(ids: Credentials) -> None:
    """Trust the kernel, but check: the ids took, and root cannot be taken back."""
    if ids.gid is not None and (os.getgid(), os.getegid()) != (ids.gid, ids.gid):
        raise PrivilegeError(f"setgid() to {ids.gid} did not take (gid {os.getgid()})")
    if ids.uid is None:
        return
    if (os.getuid(), os.geteuid()) != (ids.uid, ids.uid):
        raise PrivilegeError(f"setuid() to {ids.uid} did not take (uid {os.getuid()})")
    if ids.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise PrivilegeError(f"setuid() to {ids.uid} can be undone: refusing to run")


def chown_for(ids: Credentials, paths: Iterable[str]) -> None:
    """Give files the master made as root (unix sockets) to the ids it drops to.

    uWSGI creates its sockets after the drop, so they belong to uid:gid and
    ``chmod-socket`` modes such as 660 mean what they say; we bind earlier (a
    port below 1024 needs root) and hand the files over instead.
    """
    if not ids.wanted or os.geteuid() != 0:
        return
    uid = -1 if ids.uid is None else ids.uid
    gid = -1 if ids.gid is None else ids.gid
    for path in paths:
        try:
            os.chown(path, uid, gid)
        except OSError as exc:
            raise PrivilegeError(
                f"cannot chown {path} to {describe(ids)}: {exc.strerror}"
            ) from None
