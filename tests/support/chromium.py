"""Headless Chromium for the status-page tests: the DOM after the page's script ran, and a PNG.

``--virtual-time-budget`` lets the page's fetch-and-render loop run before
Chromium dumps the DOM or takes the picture, without a real wait.  Each call
gets its own profile directory (two Chromiums must not share one).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"

_COMMON = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    "--window-size=1200,900",
    "--virtual-time-budget=4000",
)


def _run(args: list[str], work: Path) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(work), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [CHROMIUM, *_COMMON, *args], env=env, capture_output=True, text=True, timeout=120
    )


def dump_dom(url: str, work: Path) -> str:
    """The page's DOM once its scripts have run (``--dump-dom``)."""
    result = _run([f"--user-data-dir={work / 'profile-dom'}", "--dump-dom", url], work)
    assert result.stdout, f"chromium dumped nothing:\n{result.stderr}"
    return result.stdout


def screenshot(url: str, work: Path, name: str) -> Path:
    """A PNG of the page, checked, and kept as build/screenshots/NAME; returns that path."""
    shot = work / name
    result = _run([f"--user-data-dir={work / 'profile'}", f"--screenshot={shot}", url], work)
    assert shot.exists(), f"chromium made no screenshot:\n{result.stdout}{result.stderr}"
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, len(png)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    kept = SCREENSHOTS / name
    shutil.copy(shot, kept)
    return kept
