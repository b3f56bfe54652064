"""Two spaces between method and target (RFC 9112 §3: one SP)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "request line"
requests = []
