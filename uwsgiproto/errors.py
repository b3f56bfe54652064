"""Errors raised by the uwsgi codec.

Every error carries ``status_hint``: the HTTP status a server should answer
with (or log) when it gives up on the packet.  The decoder raises nothing but
these, so callers need exactly one ``except UwsgiProtocolError``.
"""

from __future__ import annotations


class UwsgiProtocolError(Exception):
    """A uwsgi packet that cannot be decoded."""

    status_hint: int = 400


class TruncatedPacket(UwsgiProtocolError):
    """The peer closed the connection before the header or vars were complete."""


class BlockTooLarge(UwsgiProtocolError):
    """``datasize`` exceeds the configured buffer size (uWSGI's "invalid request block size").

    431 (Request Header Fields Too Large) is what the client should see: the
    block is the request's headers, typically swollen by cookies.
    """

    status_hint = 431

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        hint = ""
        if size == 0x5445:
            # b"GET " read as a uwsgi header: datasize is b"ET" little-endian.
            hint = " (this looks like HTTP sent to a uwsgi socket: use http-socket)"
        super().__init__(
            f"invalid request block size: {size} (max {limit}); "
            f"raise buffer-size to accept larger headers{hint}"
        )


class MalformedVars(UwsgiProtocolError):
    """A key or value length runs past the end of the vars block, or a key is empty."""


class EmptyVars(UwsgiProtocolError):
    """A packet whose vars block is empty (``datasize`` 0): no method, no path, nothing to serve.

    uWSGI answers such a packet with an empty environ; it is never what a
    proxy sends, so it is refused as malformed.
    """


class InvalidVarKey(UwsgiProtocolError):
    """A var key holds bytes that are not printable ASCII."""


class UnsupportedModifier(UwsgiProtocolError):
    """A packet whose modifier1 this server does not handle (only 0, WSGI, is served)."""

    status_hint = 501


class VarsTooLarge(UwsgiProtocolError):
    """Encoding: the vars do not fit the 16-bit datasize, or one key/value exceeds 65535 bytes."""

    status_hint = 431
