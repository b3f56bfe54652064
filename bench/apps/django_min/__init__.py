"""The minimal Django hello: no middleware, no apps, no database, one view.

Loaded as ``django_min.wsgi:application`` with ``bench/apps`` as the working
directory.  The sample app's /hello runs nine middlewares (sessions, CSRF,
auth, messages...), which cost more than any server does and so hide the
differences between servers; this one runs Django's handler, URL resolver
and response, and nothing else.
"""
