"""``django_min.wsgi:application``: the minimal Django hello as a WSGI callable."""

from __future__ import annotations

import os

# Set, not setdefault: this process serves this app only, whatever the
# environment it inherited names.
os.environ["DJANGO_SETTINGS_MODULE"] = "django_min.settings"

from django.core.wsgi import get_wsgi_application  # noqa: E402  (needs the settings env var)

application = get_wsgi_application()
