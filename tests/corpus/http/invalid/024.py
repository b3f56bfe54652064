"""Chunk extensions abuse: tiny chunks with large extensions exceed the per-message cap."""

from httpproto.errors import BadRequest

error = BadRequest
match = "extensions"
options = {"max_header_size": 256}
requests = [{"method": "POST", "chunked": True}]
