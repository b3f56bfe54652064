"""A bare CR inside the header block."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
