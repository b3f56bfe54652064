"""Two Host fields: routing and the application could each pick a different one (RFC 9112 §3.2)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Host"
requests = []
