"""A bare LF before the request line (only CRLF empty lines are skipped)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "bare"
requests = []
