"""Transfer-Encoding: chunked sent twice."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
