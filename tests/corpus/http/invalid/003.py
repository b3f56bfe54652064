"""Two Content-Length fields, even equal ones, are refused: no guessing which one a peer used."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Duplicate"
requests = []
