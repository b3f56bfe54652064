"""A lower-case method is not a method (methods are case-sensitive)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "method"
requests = []
