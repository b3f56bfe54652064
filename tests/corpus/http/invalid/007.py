"""Content-Length that is not decimal."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Content-Length"
requests = []
