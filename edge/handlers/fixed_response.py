"""nginx ``return``: a fixed status with an optional body, or a redirect.

``return: {status: 200, body: "ok\\n"}`` answers the body as ``text/plain``;
``return: {status: 301, location: "https://$host$request_uri"}`` redirects
with nginx's small HTML page; a bare error status (``return: 403``) sends
nginx's error page.  Bodies and locations may use ``$variables``.  Status
444 is nginx's "close the connection without answering".
"""

from __future__ import annotations

from http import HTTPStatus

from edge.config.schema import Location, ReturnHandler
from edge.exchange import Exchange, ResponseAborted
from edge.handlers import EXTRA_STATUS, expand_variables, special_response_body

_CLOSE_WITHOUT_RESPONSE = 444


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class FixedResponse:
    # The front discards a request body before calling us (we never look at it).
    reads_body = False

    def __init__(self, location: Location, settings: ReturnHandler) -> None:
        self.location = location
        self.settings = settings

    async def handle(self, exchange: Exchange) -> None:
        request, response = exchange.request, exchange.response
        status = self.settings.status
        if status == _CLOSE_WITHOUT_RESPONSE:
            request.extra[EXTRA_STATUS] = str(status)
            raise ResponseAborted("return 444: closing the connection without a response")
        headers: list[tuple[bytes, bytes]] = []
        if self.settings.location is not None:
            target = expand_variables(self.settings.location, request)
            headers.append((b"Location", target.encode("latin-1", "replace")))
            body = special_response_body(status, _reason(status))
            headers.append((b"Content-Type", b"text/html"))
        elif self.settings.body is not None:
            body = expand_variables(self.settings.body, request).encode("utf-8", "surrogateescape")
            headers.append((b"Content-Type", b"text/plain; charset=utf-8"))
        elif status >= 400:
            body = special_response_body(status, _reason(status))
            headers.append((b"Content-Type", b"text/html"))
        else:
            body = b""
        headers.append((b"Content-Length", str(len(body)).encode()))
        await response.send_head(status, headers)
        if body and request.method != "HEAD":
            await response.send(body)
        await response.end()
