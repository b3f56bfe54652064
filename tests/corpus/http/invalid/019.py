"""A chunk size that is not hex."""

from httpproto.errors import BadRequest

error = BadRequest
match = "chunk size"
requests = [{"method": "POST", "chunked": True}]
