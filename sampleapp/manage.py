#!/usr/bin/env python
"""Django's command-line utility for the sample project.

Run it from anywhere: ``python sampleapp/manage.py migrate``.  Python puts this
file's directory first on ``sys.path``, so ``sampleapp`` below is the inner
project package (see ``sampleapp/__init__.py`` one level up for the two roots).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sampleapp.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
