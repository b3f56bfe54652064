"""Bare LF line endings throughout."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
