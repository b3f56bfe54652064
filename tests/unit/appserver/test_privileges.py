"""uid/gid: resolving names and numbers, and the drop itself, done for real in a child."""

from __future__ import annotations

import grp
import json
import os
import pwd
import socket
from collections.abc import Callable
from typing import Any

import pytest

from appserver.privileges import (
    Credentials,
    PrivilegeError,
    check_reachable,
    chown_for,
    drop_privileges,
    resolve,
)

NOBODY = pwd.getpwnam("nobody")
NOGROUP_GID = NOBODY.pw_gid
NOGROUP = grp.getgrgid(NOGROUP_GID).gr_name


def _in_child(action: Callable[[], Any]) -> dict[str, Any]:
    """Run ``action`` in a forked child; return what it returned (or raised) and its ids."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                result: dict[str, Any] = {"returned": action()}
            except PrivilegeError as exc:
                result = {"error": str(exc)}
            result["ids"] = [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]
            result["groups"] = sorted(os.getgroups())
            with os.fdopen(write_end, "w") as out:
                json.dump(result, out)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as inp:
        data = inp.read()
    os.waitpid(pid, 0)
    return json.loads(data)


def _as_nobody(action: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        os.setgroups([])
        os.setgid(NOGROUP_GID)
        os.setuid(NOBODY.pw_uid)
        return action()

    return run


@pytest.fixture(autouse=True)
def _root() -> None:
    # The drop is only real as root; CI runs as root (its apt-get needs it), so this never fails there.
    assert os.geteuid() == 0, "the privilege tests need root (as CI and the sandbox run)"


# -- resolve -------------------------------------------------------------------------------


def test_names_and_numbers_resolve_to_the_same_ids() -> None:
    by_name = resolve("nobody", NOGROUP)
    by_number = resolve(str(NOBODY.pw_uid), str(NOGROUP_GID))
    assert by_name == by_number == Credentials(NOBODY.pw_uid, NOGROUP_GID, "nobody", NOGROUP)


def test_uid_alone_takes_the_users_primary_group() -> None:
    assert resolve("nobody", None) == Credentials(NOBODY.pw_uid, NOBODY.pw_gid, "nobody", NOGROUP)


def test_gid_alone_leaves_the_user() -> None:
    assert resolve(None, NOGROUP) == Credentials(None, NOGROUP_GID, None, NOGROUP)
    assert not resolve(None, None).wanted


def test_unknown_names_are_one_line_errors() -> None:
    with pytest.raises(PrivilegeError, match=r"^uid: no such user 'no-such-user-x'$"):
        resolve("no-such-user-x", None)
    with pytest.raises(PrivilegeError, match=r"^gid: no such group 'no-such-group-x'$"):
        resolve(None, "no-such-group-x")


def test_a_numeric_uid_without_a_passwd_entry_needs_a_gid() -> None:
    ids = resolve("54321", None)
    assert ids == Credentials(54321, None, None, None)
    with pytest.raises(PrivilegeError, match="has no passwd entry.*set gid as well"):
        check_reachable(ids)


# -- the drop --------------------------------------------------------------------------------


def test_the_drop_sets_gid_then_groups_then_uid_and_cannot_be_undone() -> None:
    result = _in_child(lambda: drop_privileges(resolve("nobody", NOGROUP)))
    assert result["ids"] == [NOBODY.pw_uid, NOBODY.pw_uid, NOGROUP_GID, NOGROUP_GID]
    # initgroups: nobody's own groups, none of root's.
    expected = sorted({g.gr_gid for g in grp.getgrall() if "nobody" in g.gr_mem} | {NOGROUP_GID})
    assert result["groups"] in (expected, sorted(set(expected) - {NOGROUP_GID}))
    assert 0 not in result["groups"]
    assert result["returned"] == (
        f"dropped privileges: now uid {NOBODY.pw_uid} (nobody), gid {NOGROUP_GID} ({NOGROUP}), "
        "no supplementary groups"
    )


def test_gid_only_drops_the_group_and_roots_supplementary_groups() -> None:
    result = _in_child(lambda: drop_privileges(resolve(None, NOGROUP)))
    assert result["ids"] == [0, 0, NOGROUP_GID, NOGROUP_GID]
    assert result["groups"] == []


def test_nothing_configured_changes_nothing() -> None:
    result = _in_child(lambda: drop_privileges(resolve(None, None)))
    assert result["returned"] is None
    assert result["ids"] == [0, 0, 0, 0]


def test_not_root_the_own_ids_are_fine_and_others_refused() -> None:
    same = _in_child(_as_nobody(lambda: drop_privileges(resolve("nobody", NOGROUP))))
    assert same["returned"] is None and "error" not in same  # a re-executed master: no-op
    other = _in_child(_as_nobody(lambda: drop_privileges(resolve("root", None))))
    assert other["error"] == (
        f"cannot setgid() to 0 as a non-root user (running as uid {NOBODY.pw_uid}, gid {NOGROUP_GID})"
    )
    other_user = _in_child(_as_nobody(lambda: drop_privileges(resolve("0", NOGROUP))))
    assert other_user["error"].startswith("cannot setuid() to 0 as a non-root user")


def test_unix_sockets_are_handed_to_the_dropped_user(tmp_path: Any) -> None:
    path = str(tmp_path / "app.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(path)
        os.chmod(path, 0o660)
        chown_for(resolve("nobody", NOGROUP), [path])
        status = os.stat(path)
        assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (
            NOBODY.pw_uid,
            NOGROUP_GID,
            0o660,
        )
        chown_for(resolve(None, None), [path])  # nothing configured: nothing changes
        assert os.stat(path).st_uid == NOBODY.pw_uid
    with pytest.raises(PrivilegeError, match="cannot chown .*missing.sock"):
        chown_for(resolve("nobody", None), [str(tmp_path / "missing.sock")])
