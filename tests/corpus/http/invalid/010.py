"""Transfer-Encoding without chunked: the body length is unknowable, 400 (RFC 9112 §6.3)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Transfer-Encoding"
requests = []
