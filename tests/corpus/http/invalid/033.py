"""HTTP/2.0 in an HTTP/1 request line (llhttp accepts it; we refuse)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "request line"
requests = []
