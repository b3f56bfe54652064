"""The one view: the same body, type and framing as the sample app's /hello."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

BODY = b"Hello, World!"
# CommonMiddleware sets Content-Length in the sample app; here the view does.
# Without it a server frames the body by closing the connection, which wrk
# counts as a read error per request (uWSGI --http-socket), and the hello
# would measure connection setup instead of the request path.
HEADERS = {"Content-Length": str(len(BODY))}


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BODY, content_type="text/plain; charset=utf-8", headers=HEADERS)
