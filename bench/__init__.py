"""Measure wsgistack against nginx, uWSGI and gunicorn on this machine (issue 5)."""
