"""Read uWSGI ini files into ordered option entries.

Theory of operation
-------------------
This follows uWSGI's own reader (``core/ini.c``) rather than ``configparser``:
keys may repeat (``socket`` twice means two sockets), a line is a comment only
when it *starts* with ``#`` or ``;`` (there are no inline comments), a line
without ``=`` is a bare flag, and only the asked-for section is read
(``[uwsgi]`` unless the spec is ``file.ini:section``).  Keys have ``_``
normalised to ``-``.

Values are expanded in one left-to-right pass, so expanded text is never
expanded again:

* magic variables from the file's own path: ``%d`` directory (with trailing
  slash), ``%p`` absolute path, ``%s`` file name, ``%n`` name without
  extension, ``%e`` extension, ``%c`` name of the directory, ``%x`` section
  identifier (``file.ini:section``), ``%o`` the path as given, ``%0``-``%9``
  directory components, ``%h`` host name, ``%k`` CPU count, ``%%`` a percent
  sign (uppercase letters are accepted as their lowercase twins);
* ``%(name)``: the last value of an option or placeholder set earlier in the
  same run of files.  An undefined name is left as it is, as uWSGI does, so
  ``log-format = %(addr) %(uri)`` survives;
* ``$(NAME)``: the environment variable (empty, with a warning, when unset).

A key that is not an appserver option but is referenced by a later
``%(key)`` is a placeholder (``project = mysite`` then ``chdir = /srv/%(project)``)
and is dropped; ``set-placeholder = key=value`` declares one explicitly.
``ini = other.ini`` (or ``ini = :section``) includes another file or section
in place.  Relative include paths are resolved against the launch directory,
as uWSGI does; use ``%d`` for paths next to the file.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from appserver.config import ConfigError
from appserver.options import Entry, is_known, normalise_key

DEFAULT_SECTION = "uwsgi"

_SUBSTITUTION = re.compile(r"%%|%\(([^()\s]+)\)|%([A-Za-z0-9])|\$\(([^()\s]+)\)")
_INCLUDE_KEYS = frozenset({"ini"})
_PLACEHOLDER_KEYS = frozenset({"set-placeholder", "set-ph"})


def split_spec(spec: str) -> tuple[str, str | None]:
    """``file.ini:section`` -> (path, section); a plain path -> (path, None)."""
    path, sep, section = spec.rpartition(":")
    # A colon followed by something path-like is part of the file name, not a section.
    if not sep or "/" in section:
        return spec, None
    return path, section or None


@dataclass
class _Run:
    """State shared by every file read in one call: placeholders see earlier files."""

    cwd: str
    environ: Mapping[str, str]
    warnings: list[str]
    last_values: dict[str, str] = field(default_factory=dict)
    referenced: set[str] = field(default_factory=set)
    stack: list[tuple[str, str]] = field(default_factory=list)


def read_ini(
    spec: str,
    *,
    cwd: str,
    environ: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
) -> list[Entry]:
    """Entries of one ini file (``path`` or ``path:section``), in file order."""
    return read_ini_files([spec], cwd=cwd, environ=environ, warnings=warnings)


def read_ini_files(
    specs: Sequence[str],
    *,
    cwd: str,
    environ: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
) -> list[Entry]:
    """Entries of several ini files, in order; later files may use earlier placeholders."""
    run = _Run(
        cwd=os.path.abspath(cwd),
        environ=os.environ if environ is None else environ,
        warnings=warnings if warnings is not None else [],
    )
    entries: list[Entry] = []
    for spec in specs:
        entries.extend(_read(run, spec, including_file=None))
    # Unknown keys that something referenced were placeholders, not typos.
    return [e for e in entries if is_known(e.key) or e.key not in run.referenced]


def _read(run: _Run, spec: str, *, including_file: str | None) -> list[Entry]:
    display, section = split_spec(spec)
    if not display:
        if including_file is None:
            raise ConfigError(f"{spec}: a bare :section needs a file around it")
        display = including_file  # "ini = :other" means another section of this file
    section = section or DEFAULT_SECTION
    path = os.path.normpath(os.path.join(run.cwd, os.path.expanduser(display)))
    if (path, section) in run.stack:
        raise ConfigError(f"{display}: [{section}] includes itself")

    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read ini file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM Windows editors add
    except UnicodeDecodeError as exc:
        bad_line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{display}: line {bad_line}: not valid UTF-8") from None

    magic = _magic_table(display, path, section)
    run.stack.append((path, section))
    entries: list[Entry] = []
    current: str | None = None
    found = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise ConfigError(
                    f"{display}: line {number}: malformed section header (expected [name])"
                )
            current = stripped[1:-1].strip()
            found = found or current == section
            continue
        if current != section:
            continue
        key, sep, raw = stripped.partition("=")
        key = normalise_key(key)
        if not key:
            raise ConfigError(f"{display}: line {number}: expected 'option = value'")
        value = _expand(run, raw.strip(), magic, display, key) if sep else None

        if key in _INCLUDE_KEYS:
            if not value:
                raise ConfigError(f"{display}: {key}: expected a file name")
            entries.extend(_read(run, value, including_file=display))
            continue
        if key in _PLACEHOLDER_KEYS:
            name, has_equals, placeholder = (value or "").partition("=")
            if not has_equals or not name.strip():
                raise ConfigError(f"{display}: {key}: expected NAME=VALUE, got {value!r}")
            run.last_values[normalise_key(name)] = placeholder
            continue
        run.last_values[key] = value or ""
        entries.append(Entry(key, value, display))
    run.stack.pop()

    if not found:
        raise ConfigError(f"{display}: no [{section}] section")
    return entries


def _magic_table(display: str, path: str, section: str) -> dict[str, str]:
    directory = os.path.dirname(path)
    name = os.path.basename(path)
    stem, dot, extension = name.rpartition(".")
    table = {
        "d": directory.rstrip("/") + "/",
        "p": path,
        "s": name,
        "n": stem if dot else name,
        "e": extension if dot else "",
        "c": os.path.basename(directory.rstrip("/")),
        "x": f"{name}:{section}",
        "o": display,
        "h": socket.gethostname(),
        "k": str(os.cpu_count() or 1),
    }
    for index, component in enumerate([part for part in directory.split("/") if part][:10]):
        table[str(index)] = component
    # uWSGI's uppercase variants differ only for templated vassal configs, which we lack.
    table.update({letter.upper(): value for letter, value in table.items() if letter.isalpha()})
    return table


def _expand(run: _Run, raw: str, magic: Mapping[str, str], display: str, key: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        placeholder, letter, variable = match.groups()
        if placeholder is not None:
            name = normalise_key(placeholder)
            if name not in run.last_values:
                return match.group(0)  # not ours: e.g. a log-format variable
            run.referenced.add(name)
            return run.last_values[name]
        if letter is not None:
            return magic.get(letter, match.group(0))
        if variable is not None:
            if variable not in run.environ:
                run.warnings.append(
                    f"{display}: {key}: environment variable {variable} is not set; "
                    "using an empty string"
                )
                return ""
            return run.environ[variable]
        return "%"

    return _SUBSTITUTION.sub(substitute, raw)
