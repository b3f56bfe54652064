"""Content-Length with a sign."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Content-Length"
requests = []
