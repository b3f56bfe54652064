"""A header line with no colon."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
