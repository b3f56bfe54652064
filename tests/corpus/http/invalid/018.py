"""NUL in a header value."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
