"""A field name with a character outside tchar."""

from httpproto.errors import BadRequest

error = BadRequest
requests = []
