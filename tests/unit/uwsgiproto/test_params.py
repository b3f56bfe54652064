"""nginx's uwsgi_params set and the vars a proxy builds from a request."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uwsgiproto import PacketDecoder, Request, VarsTooLarge, encode_packet
from uwsgiproto.params import (
    UWSGI_PARAMS,
    Param,
    VarsEncoder,
    encode_request,
    header_var_name,
    merge_params,
    request_vars,
)

NGINX_PARAMS = Path("/etc/nginx/uwsgi_params")


def decode(packet: bytes) -> Request:
    decoder = PacketDecoder(max_vars_size=65535)
    decoder.feed(packet)
    event = decoder.next_event()
    assert isinstance(event, Request)
    return event


def test_the_stock_set_is_nginx_conf_uwsgi_params() -> None:
    assert [(p.name, p.value, p.if_not_empty) for p in UWSGI_PARAMS] == [
        ("QUERY_STRING", "$query_string", False),
        ("REQUEST_METHOD", "$request_method", False),
        ("CONTENT_TYPE", "$content_type", False),
        ("CONTENT_LENGTH", "$content_length", False),
        ("REQUEST_URI", "$request_uri", False),
        ("PATH_INFO", "$document_uri", False),
        ("DOCUMENT_ROOT", "$document_root", False),
        ("SERVER_PROTOCOL", "$server_protocol", False),
        ("REQUEST_SCHEME", "$scheme", False),
        ("HTTPS", "$https", True),
        ("REMOTE_ADDR", "$remote_addr", False),
        ("REMOTE_PORT", "$remote_port", False),
        ("SERVER_PORT", "$server_port", False),
        ("SERVER_NAME", "$server_name", False),
    ]


@pytest.mark.skipif(not NGINX_PARAMS.exists(), reason="Debian's nginx is not installed")
def test_matches_the_installed_nginx_file() -> None:
    lines = [
        line.split()
        for line in NGINX_PARAMS.read_text().splitlines()
        if line.strip().startswith("uwsgi_param")
    ]
    installed = [
        (words[1], words[2].rstrip(";"), "if_not_empty" in line)
        for words, line in ((words, " ".join(words)) for words in lines)
    ]
    # Debian appends "uwsgi_param HTTP_HOST $host" as a security workaround; upstream nginx
    # (and this set) leaves HTTP_HOST to the client's Host header.
    installed = [entry for entry in installed if entry[0] != "HTTP_HOST"]
    assert installed == [(p.name, p.value, p.if_not_empty) for p in UWSGI_PARAMS]


def test_header_var_names() -> None:
    assert header_var_name(b"x-forwarded-for") == b"HTTP_X_FORWARDED_FOR"
    assert header_var_name(b"Content-Type") == b"HTTP_CONTENT_TYPE"
    assert header_var_name(b"host") == b"HTTP_HOST"


def test_params_then_headers_in_order() -> None:
    result = request_vars(
        [("REQUEST_METHOD", "GET", False), ("QUERY_STRING", b"a=1", False)],
        [(b"host", b"example.com:8000"), (b"accept", b"*/*")],
    )
    assert result == [
        (b"REQUEST_METHOD", b"GET"),
        (b"QUERY_STRING", b"a=1"),
        (b"HTTP_HOST", b"example.com:8000"),
        (b"HTTP_ACCEPT", b"*/*"),
    ]


def test_if_not_empty_skips_only_empty_values() -> None:
    result = request_vars(
        [("HTTPS", b"", True), ("CONTENT_LENGTH", b"", False), ("X", b"on", True)], []
    )
    assert result == [(b"CONTENT_LENGTH", b""), (b"X", b"on")]


def test_repeated_headers_join_at_the_first_position() -> None:
    result = request_vars(
        [],
        [
            (b"accept", b"text/html"),
            (b"cookie", b"a=1"),
            (b"x-tag", b"one"),
            (b"cookie", b"b=2"),
            (b"accept", b"*/*"),
        ],
    )
    assert result == [
        (b"HTTP_ACCEPT", b"text/html, */*"),
        (b"HTTP_COOKIE", b"a=1; b=2"),
        (b"HTTP_X_TAG", b"one"),
    ]


def test_a_header_set_by_a_param_is_dropped() -> None:
    result = request_vars(
        [("HTTP_X_FORWARDED_PROTO", "https", False)],
        [(b"x-forwarded-proto", b"http"), (b"x-other", b"1")],
    )
    assert result == [(b"HTTP_X_FORWARDED_PROTO", b"https"), (b"HTTP_X_OTHER", b"1")]


def test_content_type_and_length_travel_only_as_cgi_variables() -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    result = request_vars([("CONTENT_TYPE", b"text/plain", False)], headers)
    assert result == [(b"CONTENT_TYPE", b"text/plain"), (b"HTTP_CONTENT_LENGTH", b"5")]
    assert request_vars([], headers) == [
        (b"HTTP_CONTENT_TYPE", b"text/plain"),
        (b"HTTP_CONTENT_LENGTH", b"5"),
    ]


def test_underscored_and_excluded_headers_are_dropped() -> None:
    result = request_vars(
        [],
        [(b"x_forwarded_proto", b"https"), (b"transfer-encoding", b"chunked"), (b"a", b"b")],
        exclude_headers=(b"transfer-encoding",),
    )
    assert result == [(b"HTTP_A", b"b")]


def test_merge_params_replaces_in_place_and_appends() -> None:
    merged = merge_params(UWSGI_PARAMS, [Param("SERVER_NAME", "$host"), Param("X", "1")])
    names = [p.name for p in merged]
    assert names == [p.name for p in UWSGI_PARAMS] + ["X"]
    assert merged[names.index("SERVER_NAME")].value == "$host"


def test_encode_request_round_trips() -> None:
    pairs = request_vars(
        [("REQUEST_METHOD", "POST", False), ("PATH_INFO", "/caf\xe9".encode("latin-1"), False)],
        [(b"host", b"h"), (b"cookie", b"a=1"), (b"cookie", b"b=2")],
    )
    decoded = decode(encode_request(pairs, modifier1=0))
    assert decoded.vars == {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/caf\xe9",
        "HTTP_HOST": "h",
        "HTTP_COOKIE": "a=1; b=2",
    }


def test_encode_request_refuses_more_than_65535_bytes_and_says_how_many() -> None:
    pairs = [(b"HTTP_COOKIE", b"x" * 40000), (b"HTTP_X_BIG", b"y" * 30000)]
    with pytest.raises(VarsTooLarge, match=r"uwsgi request is too big: 70029 bytes"):
        encode_request(pairs)
    with pytest.raises(VarsTooLarge):
        encode_request([(b"HTTP_COOKIE", b"x" * 70000)])


@given(
    st.lists(
        st.tuples(
            st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=20).map(str.encode),
            st.binary(max_size=100),
        ),
        max_size=20,
    ),
    st.integers(0, 255),
)
def test_encode_request_is_encode_packet(pairs: list[tuple[bytes, bytes]], modifier1: int) -> None:
    """The one-join encoder and the codec's encoder produce the same bytes."""
    expected = encode_packet([(k.decode(), v) for k, v in pairs], modifier1=modifier1)
    assert encode_request(pairs, modifier1) == expected


_HEADER_NAMES = st.sampled_from(
    [b"host", b"Host", b"cookie", b"Cookie", b"x-a", b"X-A", b"x_a", b"content-type",
     b"Content-Length", b"https", b"x-forwarded-for", b"transfer-encoding", b"accept"]
)  # fmt: skip
_VALUES = st.binary(max_size=8)


@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(
                ["QUERY_STRING", "CONTENT_TYPE", "HTTPS", "HTTP_HOST", "HTTP_X_A", "X_CUSTOM"]
            ),
            _VALUES,
            st.booleans(),
        ),
        unique_by=lambda item: item[0],
    ),
    headers=st.lists(st.tuples(_HEADER_NAMES, _VALUES), max_size=8),
    exclude=st.sampled_from([(), (b"transfer-encoding",)]),
    modifier1=st.integers(0, 255),
)
def test_the_compiled_encoder_gives_the_reference_bytes(
    params: list[tuple[str, bytes, bool]],
    headers: list[tuple[bytes, bytes]],
    exclude: tuple[bytes, ...],
    modifier1: int,
) -> None:
    encoder = VarsEncoder([(name, if_not_empty) for name, _value, if_not_empty in params], modifier1)
    values = [value for _name, value, _if_not_empty in params]
    expected = encode_request(request_vars(params, headers, exclude), modifier1)
    assert encoder.encode(values, headers, exclude) == expected
    assert encoder.encode(values, headers, exclude) == expected  # from the memo, the same


def test_the_compiled_encoder_refuses_what_the_reference_refuses() -> None:
    encoder = VarsEncoder([("QUERY_STRING", False)])
    with pytest.raises(VarsTooLarge, match="QUERY_STRING is 65536 bytes"):
        encoder.encode([b"q" * 65536], [])
    with pytest.raises(VarsTooLarge, match="HTTP_X_BIG is 65536 bytes"):
        encoder.encode([b""], [(b"x-big", b"b" * 65536)])
    with pytest.raises(VarsTooLarge, match="bytes of vars"):
        encoder.encode([b"q" * 40000], [(b"x-big", b"b" * 40000)])


def test_the_compiled_encoders_header_memo_is_bounded() -> None:
    encoder = VarsEncoder([("QUERY_STRING", False)])
    for index in range(VarsEncoder._MEMO_SIZE * 3):
        encoder.encode([b""], [(b"x-h%d" % index, b"v")])
    assert len(encoder._headers) <= VarsEncoder._MEMO_SIZE
