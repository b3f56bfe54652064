"""The peer closes in the middle of a head."""

from httpproto.errors import BadRequest

error = BadRequest
match = "closed"
requests = []
