"""obs-fold inside chunked trailers."""

from httpproto.errors import BadRequest

error = BadRequest
match = "trailers"
requests = [{"method": "POST", "chunked": True}]
