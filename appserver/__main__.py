from __future__ import annotations

from appserver.cli import main

raise SystemExit(main())
