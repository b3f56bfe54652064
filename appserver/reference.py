"""The option reference in docs/appserver-options.md, generated from the option table.

``python -m appserver.reference > docs/appserver-options.md`` rewrites it; a
unit test fails when the file and the table disagree, so the documentation
cannot drift from what the server accepts.
"""

from __future__ import annotations

from typing import Any

from appserver.options import IGNORED, OPTIONS, UNSUPPORTED


def _default(value: Any) -> str:
    if value in (None, (), ""):
        return "—"
    if value is True:
        return "on"
    if value is False:
        return "off"
    return f"`{value}`"


def options_markdown() -> str:
    lines = [
        "# appserver options",
        "",
        "Generated from `appserver/options.py` by `python -m appserver.reference`; do not edit by hand.",
        "",
        "Every option works as an ini key in a `[uwsgi]` section (`key = value`) and as a flag",
        "(`--key value` or `--key=value`), with uWSGI's spelling.  Options marked *repeatable* may",
        "be given several times and accumulate.  Relative paths are resolved against the directory",
        "appserver was started from, or against `chdir` for files the application side opens.",
        "",
        "| option | aliases | default | value | what it does |",
        "|---|---|---|---|---|",
    ]
    for option in OPTIONS:
        names = [f"`{alias}`" for alias in option.aliases]
        if option.short:
            names.append(f"`-{option.short}`")
        value = option.type.metavar
        if option.multi:
            value += ", repeatable"
        lines.append(
            f"| `{option.name}` | {' '.join(names) or '—'} | {_default(option.default)} | {value} | {option.help} |"
        )
    lines += [
        "",
        "## Accepted and ignored (one warning line each)",
        "",
        "| option | why it is safe to ignore |",
        "|---|---|",
    ]
    for name, ignored in sorted(IGNORED.items()):
        lines.append(f"| `{name}` | {ignored.reason} |")
    lines += [
        "",
        "## uWSGI options appserver refuses (exit 1, with what to use instead)",
        "",
        "A trailing `*` means every option with that prefix.",
        "",
        "| option | instead |",
        "|---|---|",
    ]
    for name, reason in sorted(UNSUPPORTED.items()):
        lines.append(f"| `{name}` | {reason} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(options_markdown(), end="")
