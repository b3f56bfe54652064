from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import uwsgiproto
from uwsgiproto import (
    CLOSED,
    NEED_DATA,
    BlockTooLarge,
    EmptyVars,
    InvalidVarKey,
    MalformedVars,
    PacketDecoder,
    Request,
    TruncatedPacket,
    UnsupportedModifier,
    UwsgiProtocolError,
    VarsTooLarge,
    decode_header,
    decode_vars,
    encode_header,
    encode_packet,
    encode_vars,
)

# Keys are CGI-style names: printable ASCII.  Values are any bytes (latin-1 round trip).
keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)
values = st.binary(max_size=200).map(lambda raw: raw.decode("latin-1"))
var_dicts = st.dictionaries(keys, values, max_size=20)
# A packet names at least one var: an empty vars block is refused (EmptyVars).
packet_var_dicts = st.dictionaries(keys, values, min_size=1, max_size=20)


def decode_all(data: bytes, max_vars_size: int = 65535) -> tuple[Request, bytes]:
    decoder = PacketDecoder(max_vars_size=max_vars_size)
    decoder.feed(data)
    event = decoder.next_event()
    assert isinstance(event, Request)
    return event, decoder.trailing_data


def test_header_layout_matches_nginx() -> None:
    # nginx writes modifier1, len & 0xff, len >> 8, modifier2.
    assert encode_header(0, 0x1234, 7) == bytes([0, 0x34, 0x12, 7])
    assert decode_header(bytes([5, 0x34, 0x12, 7])) == uwsgiproto.Header(5, 0x1234, 7)


def test_vars_wire_format() -> None:
    assert encode_vars({"AB": "xyz"}) == b"\x02\x00AB\x03\x00xyz"


@given(var_dicts)
def test_decode_encode_roundtrip_of_vars_blocks(pairs: dict[str, str]) -> None:
    assert decode_vars(encode_vars(pairs)) == pairs


@given(packet_var_dicts)
def test_decode_encode_roundtrip(pairs: dict[str, str]) -> None:
    request, trailing = decode_all(encode_packet(pairs) + b"BODY")
    assert request.vars == pairs
    assert trailing == b"BODY"


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=5000))
def test_random_bytes_raise_only_codec_errors(data: bytes, limit: int) -> None:
    decoder = PacketDecoder(max_vars_size=limit)
    decoder.feed(data)
    decoder.feed(b"")
    try:
        decoder.next_event()
    except UwsgiProtocolError:
        pass


@given(st.binary(max_size=300))
def test_random_vars_blocks_raise_only_codec_errors(block: bytes) -> None:
    try:
        decode_vars(block)
    except UwsgiProtocolError:
        pass


@given(packet_var_dicts, st.randoms(use_true_random=False))
def test_split_feeding_gives_the_same_request(pairs: dict[str, str], rng: random.Random) -> None:
    packet = encode_packet(pairs) + b"tail"
    decoder = PacketDecoder(max_vars_size=65535)
    pos = 0
    event: object = NEED_DATA
    while event is NEED_DATA:
        step = rng.randint(1, 7)
        decoder.feed(packet[pos : pos + step])
        pos += step
        event = decoder.next_event()
    assert isinstance(event, Request)
    assert event.vars == pairs
    decoder.feed(packet[pos:])
    assert decoder.trailing_data == b"tail"


def test_block_larger_than_buffer_size_names_size_limit_and_option() -> None:
    packet = encode_packet({"HTTP_COOKIE": "x" * 5000})
    decoder = PacketDecoder(max_vars_size=4096)
    decoder.feed(packet[:4])
    with pytest.raises(BlockTooLarge) as info:
        decoder.next_event()
    message = str(info.value)
    assert "invalid request block size" in message
    assert "4096" in message and str(len(packet) - 4) in message
    assert "buffer-size" in message


def test_http_sent_to_uwsgi_socket_is_recognised() -> None:
    decoder = PacketDecoder()
    decoder.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(BlockTooLarge, match="21573.*http-socket"):
        decoder.next_event()


@pytest.mark.parametrize(
    "data",
    [b"\x00", b"\x00\x10", b"\x00\x10\x00"],
)
def test_truncated_header_at_eof(data: bytes) -> None:
    decoder = PacketDecoder()
    decoder.feed(data)
    assert decoder.next_event() is NEED_DATA
    decoder.feed(b"")
    with pytest.raises(TruncatedPacket):
        decoder.next_event()


def test_truncated_vars_at_eof() -> None:
    packet = encode_packet({"REQUEST_METHOD": "GET"})
    decoder = PacketDecoder()
    decoder.feed(packet[:-3])
    assert decoder.next_event() is NEED_DATA
    decoder.feed(b"")
    with pytest.raises(TruncatedPacket):
        decoder.next_event()


@pytest.mark.parametrize("rest", [b"", b"body bytes"])
def test_an_empty_vars_block_is_refused_with_400(rest: bytes) -> None:
    # uWSGI serves it with an empty environ; no proxy sends one.
    decoder = PacketDecoder()
    decoder.feed(encode_header(0, 0) + rest)
    with pytest.raises(EmptyVars, match="empty vars block") as info:
        decoder.next_event()
    assert info.value.status_hint == 400
    assert isinstance(info.value, UwsgiProtocolError)


def test_clean_close_before_any_byte() -> None:
    decoder = PacketDecoder()
    decoder.feed(b"")
    assert decoder.next_event() is CLOSED


@pytest.mark.parametrize(
    ("block", "error"),
    [
        (b"\x05\x00AB", MalformedVars),  # key runs past the block
        (b"\x02\x00AB\x09\x00xyz", MalformedVars),  # value runs past the block
        (b"\x02\x00AB", MalformedVars),  # value length missing
        (b"\x00\x00\x01\x00x", MalformedVars),  # empty key (uWSGI: "key cannot be null")
        (b"\x02\x00\xc3\xa9\x00\x00", InvalidVarKey),  # non-ASCII key
        (b"\x02\x00A\n\x00\x00", InvalidVarKey),  # control character in key
        (b"\x01", MalformedVars),  # half a length
    ],
)
def test_malformed_vars(block: bytes, error: type[UwsgiProtocolError]) -> None:
    with pytest.raises(error):
        decode_vars(block)


def test_empty_values_are_allowed() -> None:
    assert decode_vars(encode_vars({"QUERY_STRING": ""})) == {"QUERY_STRING": ""}


def test_non_wsgi_modifier_is_refused_with_501() -> None:
    decoder = PacketDecoder()
    decoder.feed(encode_packet({}, modifier1=5))
    with pytest.raises(UnsupportedModifier) as info:
        decoder.next_event()
    assert info.value.status_hint == 501


def test_utf8_bytes_survive_as_latin1_native_strings() -> None:
    raw_path = "/café/文".encode()
    request, _ = decode_all(encode_packet({"PATH_INFO": raw_path}))
    assert request.vars["PATH_INFO"].encode("latin-1") == raw_path


def test_encoding_limits() -> None:
    with pytest.raises(VarsTooLarge):
        encode_packet({"K": "v" * 70000})
    with pytest.raises(VarsTooLarge):
        encode_packet({f"K{i}": "v" * 1000 for i in range(70)})
    with pytest.raises(MalformedVars):
        encode_vars({"K": "snowman ☃"})
    with pytest.raises(InvalidVarKey):
        encode_vars({"clé": "v"})


def test_errors_carry_status_hints() -> None:
    assert BlockTooLarge(5000, 4096).status_hint == 431
    assert MalformedVars("x").status_hint == 400
    assert VarsTooLarge("x").status_hint == 431


def test_checked_keys_are_remembered_within_a_bound() -> None:
    from uwsgiproto import packet

    for index in range(packet._KEYS_KEPT * 2):
        assert decode_vars(encode_vars({f"K{index}": "v"})) == {f"K{index}": "v"}
    assert len(packet._KEYS) <= packet._KEYS_KEPT
    with pytest.raises(InvalidVarKey):  # a key never seen is still checked
        decode_vars(b"\x02\x00A\n\x00\x00")


@given(packet_var_dicts, st.binary(max_size=20))
def test_parse_packet_agrees_with_the_decoder(pairs: dict[str, str], body: bytes) -> None:
    packet = encode_packet(pairs)
    parsed = uwsgiproto.parse_packet(packet + body, 65535)
    assert parsed is not None
    request, end = parsed
    assert request == decode_all(packet + body)[0]
    assert (packet + body)[end:] == body
    for cut in range(len(packet)):  # any strict prefix is incomplete, never an error
        assert uwsgiproto.parse_packet(packet[:cut], 65535) is None
