"""Transfer-Encoding before Content-Length (TE.CL order) is refused just the same."""

from httpproto.errors import BadRequest

error = BadRequest
match = "Content-Length"
requests = []
