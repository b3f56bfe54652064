"""Errors raised by the HTTP/1.x request parser.

Every error carries ``status_hint``: the status a server answers with before
it closes the connection (h11 and waitress do the same).  ``RequestParser``
raises nothing else on any input, so a connection loop needs exactly one
``except HttpProtocolError`` and one ``error_response(exc)`` call.
"""

from __future__ import annotations


class HttpProtocolError(Exception):
    """A request that cannot be parsed or must not be served; the connection is unusable."""

    status_hint: int = 400


class BadRequest(HttpProtocolError):
    """Malformed syntax or ambiguous framing (RFC 9112 §6.3: answer 400 and close)."""


class HeaderTooLarge(HttpProtocolError):
    """The header block, one header line, or the header count exceeds its limit."""

    status_hint = 431


class UriTooLong(HttpProtocolError):
    """The request line exceeds ``max_line``."""

    status_hint = 414


class UnsupportedTransferEncoding(HttpProtocolError):
    """A transfer coding other than ``chunked`` (RFC 9112 §6.1: 501 for codings we don't know)."""

    status_hint = 501


class BodyTooLarge(HttpProtocolError):
    """The body exceeds ``max_body_size`` (nginx ``client_max_body_size``)."""

    status_hint = 413
