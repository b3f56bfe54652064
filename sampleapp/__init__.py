"""The sample Django project that exercises the whole wsgistack stack.

This directory is a Django *project directory* (it holds ``manage.py``), and it
is also a package so that setuptools can ship it (``include = sampleapp*``).
That gives the code two import roots, and both work:

* **From inside this directory** (``python sampleapp/manage.py``, uWSGI-style
  ``chdir=sampleapp`` with ``module=sampleapp.wsgi:application`` or
  ``wsgi-file=sampleapp/wsgi.py``, ``gunicorn --chdir sampleapp sampleapp.wsgi``):
  the settings are ``sampleapp.settings`` and the app is ``shop``.
* **From the repository root or an installed wheel**: the settings are
  ``sampleapp.sampleapp.settings`` and the app is ``sampleapp.shop``.

The settings and URLconf derive their dotted names from ``__package__``, so
nothing is hard-coded to one root, and ``sampleapp/wsgi.py`` here forwards to
the project's WSGI module so that ``sampleapp.wsgi:application`` works from
either root.  Do not mix the two roots in one process.
"""
