"""More header fields than max_headers is 431."""

from httpproto.errors import HeaderTooLarge

error = HeaderTooLarge
match = "header fields"
options = {"max_headers": 3}
requests = []
