"""Content-Length with a space inside the digits."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Content-Length"
requests = []
