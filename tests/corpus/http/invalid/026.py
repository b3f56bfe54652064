"""A header block over max_header_size is 431."""

from httpproto.errors import HeaderTooLarge

error = HeaderTooLarge
options = {"max_header_size": 128}
requests = []
