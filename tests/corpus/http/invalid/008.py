"""Content-Length beyond 64 bits."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Content-Length"
requests = []
