from __future__ import annotations

from pathlib import Path

from appserver.options import OPTIONS
from appserver.reference import options_markdown

DOC = Path(__file__).resolve().parents[3] / "docs" / "appserver-options.md"


def test_the_option_reference_is_up_to_date() -> None:
    # Regenerate with: python -m appserver.reference > docs/appserver-options.md
    assert DOC.read_text() == options_markdown()


def test_every_option_is_documented() -> None:
    text = DOC.read_text()
    for option in OPTIONS:
        assert f"| `{option.name}` |" in text
