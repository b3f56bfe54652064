"""edge's HPACK encoder for responses (static table and literals only) decodes, with the
real ``hpack`` decoder a client uses, to exactly the header list it was given."""

from __future__ import annotations

from hpack import Decoder

from edge.http2 import ResponseEncoder


def test_blocks_decode_to_the_headers_given() -> None:
    decoder = Decoder()
    encoder = ResponseEncoder()
    lists = [
        [(b":status", b"200"), (b"server", b"edge"), (b"content-type", b"text/html")],
        [(b":status", b"404"), (b"x-new-name", b"v" * 300), (b"etag", b'"1-2"')],
        [(b":status", b"200"), (b"server", b"edge"), (b"content-type", b"text/html")],
        [(b":status", b"206"), (b"content-range", b"bytes 0-1/2"), (b"x-" + b"n" * 200, b"")],
    ]
    blocks = [encoder.encode(headers) for headers in lists]
    for headers, block in zip(lists, blocks, strict=True):
        assert decoder.decode(block, raw=True) == headers
    # The first block empties the client's dynamic table once; nothing is ever added to it.
    assert blocks[0][:1] == b"\x20" and blocks[2][:1] != b"\x20"
    assert len(decoder.header_table.dynamic_entries) == 0
    # A header list seen again is the same block (the encoding depends on the list alone).
    assert blocks[2] == blocks[0][1:]
    assert blocks[0][1:2] == bytes([0x80 | 8])  # ":status: 200" is static entry 8


def test_a_client_that_shrinks_the_table_is_still_understood() -> None:
    decoder = Decoder()
    decoder.max_allowed_table_size = 0  # SETTINGS_HEADER_TABLE_SIZE: 0
    encoder = ResponseEncoder()
    encoder.header_table_size = 0  # what h2 sets from the client's SETTINGS
    headers = [(b":status", b"200"), (b"date", b"Thu, 03 Dec 2026 13:40:00 GMT")]
    assert decoder.decode(encoder.encode(headers), raw=True) == headers
