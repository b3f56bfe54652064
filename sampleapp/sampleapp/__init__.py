"""Project package: settings, URLconf, WSGI entry point and middleware.

This package is importable as ``sampleapp`` (from the project directory) or as
``sampleapp.sampleapp`` (from the repository root).  ``app_module`` turns an app
name into the dotted path that matches whichever root is in use.
"""

from __future__ import annotations


def app_module(name: str) -> str:
    """Return the dotted path of app *name*, a sibling of this package."""
    root = __name__.rpartition(".")[0]
    return f"{root}.{name}" if root else name
