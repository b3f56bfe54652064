"""NUL in the request target."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
