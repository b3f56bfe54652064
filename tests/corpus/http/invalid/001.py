"""Content-Length and Transfer-Encoding together: the classic CL.TE smuggling (RFC 9112 §6.3)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Transfer-Encoding"
requests = []
