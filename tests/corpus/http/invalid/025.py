"""A request line over max_line is 414."""

from httpproto.errors import UriTooLong

error = UriTooLong
options = {"max_line": 64}
requests = []
