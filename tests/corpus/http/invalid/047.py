"""The peer closes after the last chunk but before the blank line that ends the trailers."""

from httpproto.errors import BadRequest

error = BadRequest
match = "closed"
requests = [{"method": "POST", "chunked": True}]
