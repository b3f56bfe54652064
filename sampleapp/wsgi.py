"""``sampleapp.wsgi:application`` from the repository root (the image's /app).

The project's real entry point is ``sampleapp/sampleapp/wsgi.py``, reached as
``sampleapp.wsgi`` from inside this directory.  From the repository root the
same dotted name lands here instead, so this module forwards to it: the
gunicorn role's default ``sampleapp.wsgi:application`` (cwd /app) and
``gunicorn --chdir sampleapp sampleapp.wsgi`` both serve the project.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__:
    from .sampleapp.wsgi import application
else:
    # Loaded by path (wsgi-file=sampleapp/wsgi.py without chdir): import the
    # project package from this directory, as manage.py does.
    _PROJECT_DIR = str(Path(__file__).resolve().parent)
    if _PROJECT_DIR not in sys.path:
        sys.path.insert(0, _PROJECT_DIR)
    from sampleapp.wsgi import application

__all__ = ["application"]
