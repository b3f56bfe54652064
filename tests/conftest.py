"""Suite-wide rules.

In CI (``CI=true``), a skipped test is a failure: a Docker or nginx test that
skips there proves nothing, and the build must say so loudly.

Hypothesis runs without its per-example deadline: the machine is shared, and a
slow example is not a wrong one (the properties are what the tests check).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

settings.register_profile("wsgistack", deadline=None)
settings.load_profile("wsgistack")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and session.exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; in CI a skip is a failure", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
