"""HTTP/0.9 (no version, no headers) is not served."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
