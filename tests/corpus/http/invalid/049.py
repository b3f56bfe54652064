"""An HTTP/1.1 request without Host (RFC 9112 §3.2 requires 400)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "without Host"
requests = []
