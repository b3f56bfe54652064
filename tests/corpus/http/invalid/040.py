"""Content-Length above max_body_size is 413, before any of the body is read."""

from httpproto.errors import BodyTooLarge

error = BodyTooLarge
options = {"max_body_size": 10}
requests = []
