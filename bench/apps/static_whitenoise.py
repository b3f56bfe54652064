"""Static files the way a Django site without nginx serves them: WhiteNoise.

WhiteNoise answers ``/static/...`` from ``BENCH_STATIC_ROOT`` before the
wrapped application is called, so wrapping the raw hello costs the same per
request as wrapping Django (``WhiteNoise(get_wsgi_application(), ...)``)
while starting faster.
"""

from __future__ import annotations

import os

from hello_wsgi import application as hello
from whitenoise import WhiteNoise

application = WhiteNoise(hello, root=os.environ["BENCH_STATIC_ROOT"], prefix="static/")
