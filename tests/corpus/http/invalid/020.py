"""Whitespace after a chunk size (parsers disagree on it: smuggling)."""

from httpproto.errors import BadRequest

error = BadRequest
match = "chunk size"
requests = [{"method": "POST", "chunked": True}]
