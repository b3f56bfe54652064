"""WSGI entry point: the module-level callable ``application``.

Every way a server loads this file works:

* ``module=sampleapp.wsgi:application`` with ``chdir=sampleapp`` (uWSGI ini),
  ``gunicorn --chdir sampleapp sampleapp.wsgi``: imported as ``sampleapp.wsgi``.
* ``module=sampleapp.sampleapp.wsgi:application`` from the repository root:
  imported as ``sampleapp.sampleapp.wsgi``; the settings follow ``__package__``.
* ``wsgi-file=sampleapp/wsgi.py``: loaded by path with no package at all, so we
  put the project directory on ``sys.path`` ourselves rather than rely on the
  server having done it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if not __package__:
    _PROJECT_DIR = str(Path(__file__).resolve().parent.parent)
    if _PROJECT_DIR not in sys.path:
        sys.path.insert(0, _PROJECT_DIR)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{__package__ or 'sampleapp'}.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402  (needs the settings env var)

application = get_wsgi_application()
