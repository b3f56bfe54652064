"""A chunk size beyond 64 bits."""

from httpproto.errors import BadRequest

error = BadRequest
match = "chunk size"
requests = [{"method": "POST", "chunked": True}]
