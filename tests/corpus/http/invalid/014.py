"""obs-fold (a field line starting with SP) is refused (RFC 9112 §5.2 allows 400)."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
