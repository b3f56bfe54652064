"""HTTP/1.2 is not a version we know."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
