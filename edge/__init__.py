"""edge: an nginx-class asyncio edge server: static files, uwsgi/HTTP proxy, limits, logs."""

from __future__ import annotations

__version__ = "0.1.0"
