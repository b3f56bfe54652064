"""A valid request, then a smuggling attempt pipelined behind it: the first is served, then 400."""

from httpproto.errors import BadRequest

error = BadRequest
requests = [{"method": "GET", "target": b"/ok", "body": b""}]
