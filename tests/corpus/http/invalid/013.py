"""Transfer-Encoding in an HTTP/1.0 request means faulty framing (RFC 9112 §6.1)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "HTTP/1.0"
requests = []
