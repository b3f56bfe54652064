"""The peer closes before Content-Length bytes have arrived."""

from httpproto.errors import BadRequest

error = BadRequest
match = "closed"
requests = [{"method": "POST", "content_length": 10}]
