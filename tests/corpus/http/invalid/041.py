"""A chunked body growing past max_body_size is 413 when the chunk that crosses it is announced."""

from httpproto.errors import BodyTooLarge

error = BodyTooLarge
options = {"max_body_size": 10}
requests = [{"method": "POST", "chunked": True}]
