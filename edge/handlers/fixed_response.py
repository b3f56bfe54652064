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
from edge.exchange import EdgeError, Exchange, ResponseAborted
from edge.handlers import FastAnswer, special_response_body
from edge.response_rules import error_page_for
from edge.variables import compile_template, expand
from httpproto import RequestHead, encode_head_bytes

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
        self._constant = self._constant_answer()
        self._location = None if settings.location is None else compile_template(settings.location)
        self._body = None if settings.body is None else compile_template(settings.body)

    def _constant_answer(self) -> FastAnswer | None:
        """The whole answer when it has no variables (and is not 444), built once."""
        settings = self.settings
        texts = (settings.location or "", settings.body or "")
        if settings.status == _CLOSE_WITHOUT_RESPONSE or any("$" in text for text in texts):
            return None
        headers, body = self._headers_and_body(
            None if settings.location is None else settings.location.encode(),
            None if settings.body is None else settings.body.encode(),
        )
        encode_head_bytes(settings.status, headers)  # refuses CR/LF in a configured Location
        fields = b"".join(b"%s: %s\r\n" % pair for pair in headers)
        return settings.status, fields, body

    def respond_now(self, head: RequestHead, path: str) -> FastAnswer | None:
        return self._constant

    def _headers_and_body(
        self, location: bytes | None, body_text: bytes | None
    ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        status = self.settings.status
        headers: list[tuple[bytes, bytes]] = []
        if location is not None:
            headers.append((b"Location", location))
            body = special_response_body(status, _reason(status))
            headers.append((b"Content-Type", b"text/html"))
        elif body_text is not None:
            body = body_text
            headers.append((b"Content-Type", b"text/plain; charset=utf-8"))
        elif status >= 400:
            body = special_response_body(status, _reason(status))
            headers.append((b"Content-Type", b"text/html"))
        else:
            body = b""
        headers.append((b"Content-Length", str(len(body)).encode()))
        return headers, body

    async def handle(self, exchange: Exchange) -> None:
        request, response = exchange.request, exchange.response
        status = self.settings.status
        if status == _CLOSE_WITHOUT_RESPONSE:
            request.logged_status = status
            raise ResponseAborted("return 444: closing the connection without a response")
        location, body_template = self._location, self._body
        if location is None and body_template is None and error_page_for(request, status):
            # nginx's bare "return CODE" is a special response, which error_page replaces.
            raise EdgeError(f"return {status}", status=status, level="info")
        headers, body = self._headers_and_body(
            None if location is None else expand(location, request),
            None if body_template is None else expand(body_template, request),
        )
        await response.send_head(status, headers)
        if body and request.method != "HEAD":
            await response.send(body)
        await response.end()
