"""chunked not last in Transfer-Encoding: 400 (RFC 9112 §6.3)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Transfer-Encoding"
requests = []
