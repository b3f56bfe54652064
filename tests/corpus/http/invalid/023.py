"""A bare LF inside a chunk extension."""

from httpproto.errors import BadRequest

error = BadRequest
match = "chunk size"
requests = [{"method": "POST", "chunked": True}]
