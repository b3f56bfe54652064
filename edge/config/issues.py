"""How the config loader reports problems: every one, each with its place in the YAML.

Inside the loader a problem is an ``Issue`` whose path is relative to the node
being structured; each level that hands it up prefixes its own key or index,
so the path ends up absolute without anyone passing it down.  A structuring
function that fails raises ``Invalid`` with all of its issues and the
best-effort value it could still build, so the levels above keep going.  The
user sees ``ConfigIssue``s: ``servers[0].locations[2].alias: directory does
not exist``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, NamedTuple

Path = tuple[str | int, ...]  # mapping keys and list indices

REF = "\x00"  # where a message names one of its ``refs``, in order
NOTHING: Any = object()  # no value could be built


class ConfigIssue(NamedTuple):
    """One problem: where it is in the YAML (or which flag), and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigErrors(Exception):
    """Every problem found in one configuration; ``str()`` is one issue per line."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def lines(self, source: str | None) -> list[str]:
        """One line per issue, each naming the file (``edge -t`` and a refused reload alike).

        Issues found while reading the file (unreadable, invalid YAML) name it already.
        """
        if not source:
            return [str(issue) for issue in self.issues]
        return [
            text if text.startswith(source) else f"{source}: {text}"
            for text in (str(issue) for issue in self.issues)
        ]


class Issue(NamedTuple):
    """A problem at ``path`` (relative); ``refs`` are places its message names."""

    path: Path
    message: str
    refs: tuple[Path, ...] = ()

    def under(self, prefix: Path) -> Issue:
        return Issue(prefix + self.path, self.message, tuple(prefix + ref for ref in self.refs))

    def public(self) -> ConfigIssue:
        message = self.message
        for ref in self.refs:
            message = message.replace(REF, path_text(ref), 1)
        return ConfigIssue(path_text(self.path), message)


class Invalid(ValueError):
    """A node did not structure: its issues, and the value built with defaults in place of
    the invalid parts (``NOTHING`` when there is none)."""

    def __init__(self, issues: Iterable[Issue], salvaged: object = NOTHING) -> None:
        self.issues = list(issues)
        self.salvaged = salvaged
        super().__init__(self.issues)


def issues_of(error: ValueError, where: Path = ()) -> list[Issue]:
    """The issues of a failed structuring step, placed under ``where``."""
    if isinstance(error, Invalid):
        return [issue.under(where) for issue in error.issues]
    return [Issue(where, str(error))]


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def path_text(path: Path) -> str:
    """``("servers", 0, "listen")`` -> ``servers[0].listen``."""
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text
