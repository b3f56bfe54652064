"""Edge configuration: frozen schema objects, built and validated only by ``load``."""

from __future__ import annotations

from edge.config.load import (
    ConfigErrors,
    ConfigIssue,
    load_config,
    parse_config,
    quick_config,
)
from edge.config.schema import EdgeConfig

__all__ = [
    "ConfigErrors",
    "ConfigIssue",
    "EdgeConfig",
    "load_config",
    "parse_config",
    "quick_config",
]
