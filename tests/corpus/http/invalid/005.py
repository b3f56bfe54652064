"""Negative Content-Length."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Content-Length"
requests = []
