"""``python -m edge`` is the ``edge`` command (the worker processes pick uvloop themselves)."""

from __future__ import annotations

from edge.cli import main

raise SystemExit(main())
