"""Content-Length as a list (RFC 9110 §8.6 lets a recipient merge equal values; we refuse)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Content-Length"
requests = []
