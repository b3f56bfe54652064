"""gzip before chunked: framing is sound but we cannot undo gzip, so 501 (RFC 9112 §6.1)."""

from httpproto.errors import UnsupportedTransferEncoding

error = UnsupportedTransferEncoding
match = "gzip"
requests = []
