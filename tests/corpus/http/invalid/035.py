"""Whitespace between a field name and the colon (RFC 9112 §5.1 requires 400)."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
