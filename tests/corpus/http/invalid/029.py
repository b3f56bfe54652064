"""The HTTP/2 connection preface on an HTTP/1 port."""

from httpproto.errors import BadRequest

error = BadRequest
match = "HTTP/2"
requests = []
