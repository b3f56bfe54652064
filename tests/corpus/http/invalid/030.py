"""A TLS ClientHello sent to a plain-HTTP port."""

from httpproto.errors import BadRequest

error = BadRequest
match = "method"
requests = []
