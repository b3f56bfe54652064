"""One header line over max_line is 431 even though the block fits."""

from httpproto.errors import HeaderTooLarge

error = HeaderTooLarge
match = "cookie"
options = {"max_line": 64}
requests = []
