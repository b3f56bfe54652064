"""``appserver`` command line: argv -> AppServerConfig -> master; or --stop/--reload PIDFILE.

Theory of operation
-------------------
The parser is generated from ``appserver.options.OPTIONS``: every option gets
``--name``, ``--alias`` and uWSGI's short flag, and each occurrence is recorded
as an ``Entry`` in argv order, so ``build_config`` sees flags exactly as it sees
ini lines.  Ini files (``--ini FILE[:SECTION]``, repeatable, or positional
``*.ini`` arguments, read first) come before all flags, so a flag overrides
the file and a multi option adds to it.

Flags whose value is optional (booleans, ``chmod-socket``) follow getopt, as
uWSGI does: ``--master`` never swallows the next argument unless that argument
is a valid value of the flag (``--master true``, ``-C 660``), so
``appserver --master uwsgi.ini`` still reads ``uwsgi.ini``.

Control commands follow uWSGI's: ``--stop PIDFILE`` sends SIGTERM (a graceful
stop here) and ``--reload PIDFILE`` sends SIGHUP (a graceful reload).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from appserver import __version__
from appserver.config import AppServerConfig, ConfigError
from appserver.ini import read_ini_files, split_spec
from appserver.options import (
    IGNORED,
    OPTIONS,
    Entry,
    ValueType,
    build_config,
    unknown_option_message,
    unsupported_reason,
)
from appserver.pidfile import PidfileError, signal_pidfile


class _ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    # argparse prints usage and exits 2; we want one line and exit 1, like every config error.
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)


class _EntryAction(argparse.Action):
    """Append (canonical name, raw value, flag as typed) to namespace.entries, in order."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, key: str, **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.key = key

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        entries = getattr(namespace, "entries", None)
        if entries is None:
            entries = []
            namespace.entries = entries
        raw = values if values is None or isinstance(values, str) else str(values)
        entries.append(Entry(self.key, raw, option_string or f"--{self.key}"))


@dataclass
class Invocation:
    """What argv asked for: control command, ini files and flag entries."""

    ini_specs: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    stop: str | None = None
    reload: str | None = None


def _spellings() -> dict[str, tuple[str, ValueType | None]]:
    """Every flag spelling whose value is optional -> (its first long spelling, its type)."""
    optional: dict[str, tuple[str, ValueType | None]] = {}
    for option in OPTIONS:
        if option.type.bare is None:
            continue
        long = f"--{option.name}"
        for spelling in (option.name, *option.aliases):
            optional[f"--{spelling}"] = (f"--{spelling}", option.type)
        if option.short:
            optional[f"-{option.short}"] = (long, option.type)
    for name, ignored in IGNORED.items():
        if not ignored.takes_value:
            optional[f"--{name}"] = (f"--{name}", None)
    return optional


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="appserver",
        usage="appserver [FILE.ini ...] [--ini FILE[:SECTION]] [OPTIONS]\n"
        "       appserver --stop PIDFILE | --reload PIDFILE",
        description="A uWSGI-compatible WSGI application server. "
        "Options use uWSGI's names; ini files use the [uwsgi] section.",
        epilog="Control: appserver --stop PIDFILE (graceful stop), "
        "appserver --reload PIDFILE (graceful reload).",
        allow_abbrev=False,  # uWSGI matches option names exactly
    )
    parser.add_argument("--version", action="version", version=f"appserver {__version__}")
    parser.add_argument(
        "--ini",
        action="append",
        default=[],
        metavar="FILE[:SECTION]",
        help="read options from an ini file ([uwsgi] section unless :SECTION); repeatable",
    )
    control = parser.add_mutually_exclusive_group()
    control.add_argument("--stop", metavar="PIDFILE", help="graceful stop (sends SIGTERM)")
    control.add_argument("--reload", metavar="PIDFILE", help="graceful reload (sends SIGHUP)")

    group = parser.add_argument_group("server options (also valid as ini keys)")
    for option in OPTIONS:
        flags = [f"--{option.name}", *(f"--{alias}" for alias in option.aliases)]
        if option.short:
            flags.append(f"-{option.short}")
        default = "" if option.default in (None, ()) else f" (default: {option.default})"
        repeat = "; repeatable" if option.multi else ""
        group.add_argument(
            *flags,
            action=_EntryAction,
            key=option.name,
            dest="entries",
            default=argparse.SUPPRESS,
            nargs="?" if option.type.bare is not None else None,
            metavar=option.type.metavar,
            # argparse %-formats help text; "%(var)" in log-format's help must survive.
            help=f"{option.help}{default}{repeat}".replace("%", "%%"),
        )
    for name, ignored in IGNORED.items():
        parser.add_argument(
            f"--{name}",
            action=_EntryAction,
            key=name,
            dest="entries",
            default=argparse.SUPPRESS,
            nargs=None if ignored.takes_value else "?",
            help=argparse.SUPPRESS,
        )
    return parser


def _accepts(value_type: ValueType, token: str) -> bool:
    try:
        value_type.parse(token)
    except ValueError:
        return False
    return True


def _attach_optional_values(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--flag`` to ``--flag=`` (or ``--flag=VALUE``) for optional-value flags.

    argparse would otherwise take the next argument as the flag's value; an
    explicit (possibly empty) ``=`` value stops that.  Empty means bare.
    """
    optional = _spellings()
    rewritten: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--":
            rewritten.extend(argv[index:])
            break
        if token not in optional:
            rewritten.append(token)
            index += 1
            continue
        long, value_type = optional[token]
        following = argv[index + 1] if index + 1 < len(argv) else None
        if value_type is not None and following is not None and _accepts(value_type, following):
            rewritten.append(f"{long}={following}")
            index += 2
        else:
            rewritten.append(f"{long}=")
            index += 1
    return rewritten


def _is_ini_spec(token: str) -> bool:
    return split_spec(token)[0].endswith(".ini")


def parse_command_line(argv: Sequence[str]) -> Invocation:
    """Split argv into control command, ini files and flag entries; ConfigError if malformed."""
    parser = build_parser()
    namespace, extras = parser.parse_known_args(_attach_optional_values(argv))
    invocation = Invocation(stop=namespace.stop, reload=namespace.reload)
    for token in extras:
        if token.startswith("-") and token != "-":
            flag = token.partition("=")[0]
            name = flag.lstrip("-")
            reason = unsupported_reason(name)
            if reason is not None:
                raise ConfigError(f"{flag}: not supported by appserver ({reason})")
            raise ConfigError(f"{flag}: {unknown_option_message(name)}")
        if not _is_ini_spec(token):
            raise ConfigError(f"unexpected argument {token!r} (config files must end in .ini)")
        invocation.ini_specs.append(token)
    invocation.ini_specs.extend(namespace.ini)
    invocation.entries = list(getattr(namespace, "entries", None) or [])
    return invocation


def load_config(
    argv: Sequence[str], *, cwd: str | None = None
) -> tuple[AppServerConfig, list[str]]:
    """Build the config that ``argv`` describes, and the warnings to print.

    The master calls this again on a graceful reload with the same argv and the
    original launch directory (``cwd``), so relative ini paths still resolve.
    """
    cwd = os.getcwd() if cwd is None else cwd
    invocation = parse_command_line(argv)
    if invocation.stop or invocation.reload:
        raise ConfigError("--stop/--reload control a running server; they build no config")
    warnings: list[str] = []
    entries = read_ini_files(invocation.ini_specs, cwd=cwd, warnings=warnings)
    config_file = None
    if invocation.ini_specs:
        config_file = os.path.normpath(os.path.join(cwd, split_spec(invocation.ini_specs[0])[0]))
    config = build_config(
        [*entries, *invocation.entries],
        cwd=cwd,
        argv=argv,
        config_file=config_file,
        warnings=warnings,
    )
    return config, warnings


def _control(flag: str, path: str, signum: signal.Signals) -> int:
    try:
        signal_pidfile(path, signum)
    except PidfileError as exc:
        print(f"appserver: {flag}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        print(
            "appserver: nothing to run: give an ini file (appserver uwsgi.ini) "
            "or options (appserver --help)",
            file=sys.stderr,
        )
        return 1
    try:
        invocation = parse_command_line(args)
        if invocation.stop is not None:
            return _control("--stop", invocation.stop, signal.SIGTERM)
        if invocation.reload is not None:
            return _control("--reload", invocation.reload, signal.SIGHUP)
        config, warnings = load_config(args)
    except _ParserExit as exc:
        return exc.status
    except ConfigError as exc:
        print(f"appserver: {exc}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"appserver: warning: {warning}", file=sys.stderr)

    # Imported late: the master pulls in the whole server, which --help and
    # config errors do not need.  The master gets load_config as a value, for
    # reloads, rather than importing this module back.
    from appserver.master import run

    return run(config, load_config)
