"""A bare LF only on the blank line that ends the head."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
