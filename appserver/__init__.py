"""appserver: a uWSGI-class WSGI application server (master, workers, threads; uwsgi and HTTP)."""

from __future__ import annotations

__version__ = "0.1.0"
