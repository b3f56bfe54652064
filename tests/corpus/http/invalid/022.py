"""Chunk data longer than its size: the CRLF is missing."""

from httpproto.errors import BadRequest

error = BadRequest
match = "CRLF"
requests = [{"method": "POST", "chunked": True}]
