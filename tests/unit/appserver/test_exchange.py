"""The exchange loop (Handler.serve over UwsgiConnection / HttpConnection) on a real socketpair.

No worker process and no poller: the test is the client on one end of a
socketpair, the server's connection object on the other, and what is asserted
is what a client reads (status, headers, bytes) and whether the connection
is kept (serve() returns True: park it) or closed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import uwsgiproto
from appserver.connection import (
    ClientConnection,
    HttpConnection,
    UwsgiConnection,
    WorkerContext,
)
from appserver.environ import base_environ, http_listener_environ
from appserver.handler import Handler
from appserver.log import format_uwsgi
from appserver.scoreboard import Scoreboard
from tests.support.clients import uwsgi_vars

Environ = dict[str, Any]


def hello(environ: Environ, start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


class App:
    """Records each environ; answers according to PATH_INFO."""

    def __init__(self) -> None:
        self.environs: list[Environ] = []

    def __call__(self, environ: Environ, start_response: Callable[..., Any]) -> Any:
        self.environs.append(dict(environ))
        path = environ["PATH_INFO"]
        if path == "/echo":
            body = environ["wsgi.input"].read()
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return [body]
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return iter([b"one ", b"two ", b"three"])
        if path == "/ignore-body":
            start_response("204 No Content", [])
            return []
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/close":
            start_response("200 OK", [("Connection", "close"), ("Content-Length", "2")])
            return [b"ok"]
        if path == "/short":
            start_response("200 OK", [("Content-Length", "10")])
            return [b"12345"]
        if path == "/long":
            start_response("200 OK", [("Content-Length", "3")])
            return iter([b"12", b"345678"])
        return hello(environ, start_response)


@pytest.fixture
def app() -> App:
    return App()


def make_context(app: App, **options: Any) -> WorkerContext:
    settings: dict[str, Any] = {
        "buffer_size": 4096,
        "post_buffering": 0,
        "socket_timeout": 4.0,
        "static_map": None,
        "format_request": None,
        "keepalive": 5,
        **options,
    }
    return WorkerContext(
        app=app,
        base_environ=base_environ(multithread=False, multiprocess=False),
        worker_id=1,
        **settings,
    )


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    client.settimeout(5)
    server.settimeout(5)
    yield server, client
    server.close()
    client.close()


def handler_for(context: WorkerContext) -> Handler:
    return Handler(context, Scoreboard(1, 1).core_slot(0, 0), 0)


def uwsgi_connection(server: socket.socket, context: WorkerContext) -> UwsgiConnection:
    return UwsgiConnection(server, ("10.0.0.1", 4000), context, context.base_environ)


def http_connection(server: socket.socket, context: WorkerContext) -> HttpConnection:
    environ = http_listener_environ(context.base_environ, "127.0.0.1", "8000")
    return HttpConnection(server, ("10.0.0.1", 4000), context, environ, 8192)


def packet(method: str = "GET", uri: str = "/", body: bytes = b"", offer: bool = True) -> bytes:
    extra = {"WSGISTACK_KEEPALIVE": "1"} if offer else {}
    return uwsgiproto.encode_packet(uwsgi_vars(method, uri, body, **extra)) + body


_UNREAD: dict[int, bytes] = {}  # per client socket: bytes read past the last response


def read_response(client: socket.socket, head_only: bool = False) -> tuple[bytes, bytes]:
    """One framed response: (head, body), reading exactly its bytes (the rest is kept)."""
    data = _UNREAD.pop(client.fileno(), b"")

    def more() -> None:
        nonlocal data
        chunk = client.recv(65536)
        assert chunk, f"closed before a complete response: {data!r}"
        data += chunk

    while b"\r\n\r\n" not in data:
        more()
    head, _, data = data.partition(b"\r\n\r\n")
    fields = {
        line.split(b":", 1)[0].lower(): line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")[1:]
    }
    body = b""
    if head_only or head.startswith((b"HTTP/1.1 204", b"HTTP/1.1 304")):
        pass
    elif b"content-length" in fields:
        length = int(fields[b"content-length"])
        while len(data) < length:
            more()
        body, data = data[:length], data[length:]
    else:
        assert fields.get(b"transfer-encoding") == b"chunked", head
        while True:
            while b"\r\n" not in data:
                more()
            size_line, _, data = data.partition(b"\r\n")
            size = int(size_line, 16)
            while len(data) < size + 2:
                more()
            body, data = body + data[:size], data[size + 2 :]
            if not size:
                break
    _UNREAD[client.fileno()] = data
    return head, body


def read_to_close(client: socket.socket) -> bytes:
    chunks = []
    while data := client.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def is_closed(sock: socket.socket) -> bool:
    return sock.fileno() < 0


# -- the uwsgi protocol without the offer: byte for byte what nginx has always seen --


def test_without_the_offer_a_raw_response_then_close(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet(offer=False))
    assert handler_for(connection.context).serve(connection) is False
    assert read_to_close(client) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert is_closed(server)


def test_without_the_offer_a_streamed_body_is_raw_and_ends_with_the_connection(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet(uri="/stream", offer=False))
    handler_for(connection.context).serve(connection)
    assert (
        read_to_close(client) == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\none two three"
    )


# -- the WSGISTACK_KEEPALIVE offer ---------------------------------------------------


def test_the_offer_gets_a_framed_answer_and_the_connection_is_kept(pair, app) -> None:
    server, client = pair
    context = make_context(app)
    connection = uwsgi_connection(server, context)
    handler = handler_for(context)
    for uri in ("/a", "/b", "/c"):
        client.sendall(packet(uri=uri))
        assert handler.serve(connection) is True  # park it: the next packet will come
        head, body = read_response(client)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nWsgistack-Keepalive: timeout=5" in head
        assert b"Connection" not in head and b"Date" not in head
        assert body == b"hello"
    assert [environ["PATH_INFO"] for environ in app.environs] == ["/a", "/b", "/c"]
    # The app never sees the offer.
    assert all("WSGISTACK_KEEPALIVE" not in environ for environ in app.environs)
    assert not is_closed(server)


def test_an_idle_kept_connection_closed_by_the_client_closes_quietly(pair, app, capfd) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet())
    assert handler_for(connection.context).serve(connection) is True
    read_response(client)
    client.close()
    assert handler_for(connection.context).serve(connection) is False
    assert is_closed(server)
    assert capfd.readouterr().err == ""


def test_the_offer_with_a_streamed_app_is_chunked(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet(uri="/stream"))
    assert handler_for(connection.context).serve(connection) is True
    head, body = read_response(client)
    assert b"Transfer-Encoding: chunked" in head
    assert body == b"one two three"


def test_the_offer_on_head_sends_no_body(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet("HEAD", "/"))
    assert handler_for(connection.context).serve(connection) is True
    head, body = read_response(client, head_only=True)
    assert b"Content-Length: 5" in head and body == b""
    client.sendall(packet("GET", "/"))  # the next response starts right after the head
    assert handler_for(connection.context).serve(connection) is True
    assert read_response(client)[1] == b"hello"


def test_a_post_body_and_then_the_next_packet(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    handler = handler_for(connection.context)
    payload = bytes(range(256)) * 400  # 100 KiB: more than one read
    client.sendall(packet("POST", "/echo", payload))
    assert handler.serve(connection) is True
    assert read_response(client)[1] == payload
    client.sendall(packet("GET", "/"))
    assert handler.serve(connection) is True
    assert read_response(client)[1] == b"hello"


def test_a_body_the_app_left_unread_is_drained(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    handler = handler_for(connection.context)
    client.sendall(packet("POST", "/ignore-body", b"x" * 1000) + packet("GET", "/"))
    assert handler.serve(connection) is True  # the second packet was already there
    head, _ = read_response(client, head_only=True)
    assert head.startswith(b"HTTP/1.1 204 No Content") and b"Wsgistack-Keepalive" in head
    assert read_response(client)[1] == b"hello"


def test_too_much_unread_body_declines_with_a_raw_answer(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    body = b"y" * 300_000
    sender = threading.Thread(target=client.sendall, args=(packet("POST", "/ignore-body", body),))
    sender.start()
    assert handler_for(connection.context).serve(connection) is False
    raw = read_to_close(client)
    sender.join()
    assert raw == b"HTTP/1.1 204 No Content\r\n\r\n"  # the standard answer: no header, raw
    assert is_closed(server)


def test_an_app_error_declines_with_the_raw_500(pair, app, capfd) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet(uri="/boom"))
    assert handler_for(connection.context).serve(connection) is False
    raw = read_to_close(client)
    assert raw.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert b"Wsgistack-Keepalive" not in raw
    assert raw.endswith(b"\r\n\r\n500 Internal Server Error\n")
    assert "RuntimeError: boom" in capfd.readouterr().err


def test_an_app_that_says_connection_close_declines(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet(uri="/close"))
    assert handler_for(connection.context).serve(connection) is False
    assert (
        read_to_close(client)
        == b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
    )


def test_an_app_that_sends_less_than_its_content_length_closes_the_connection(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet(uri="/short"))
    assert handler_for(connection.context).serve(connection) is False
    raw = read_to_close(client)
    assert b"Wsgistack-Keepalive" in raw and raw.endswith(b"\r\n\r\n12345")


def test_bytes_past_the_content_length_are_not_sent(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(packet(uri="/long") + packet(uri="/"))
    assert handler_for(connection.context).serve(connection) is True
    assert read_response(client)[1] == b"123"
    assert read_response(client)[1] == b"hello"  # the stream is still in step


def test_a_malformed_second_packet_gets_its_status_and_a_close(pair, app, capfd) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    handler = handler_for(connection.context)
    client.sendall(packet())
    assert handler.serve(connection) is True
    read_response(client)
    client.sendall(b"\x00\x05\x00\x00\x09\x00ABC")  # a key running past its block
    assert handler.serve(connection) is False
    raw = read_to_close(client)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert raw.endswith(b"\r\n\r\n400 Bad Request\n")  # the status line only
    assert "uwsgi request refused from 10.0.0.1:4000:" in capfd.readouterr().err


def test_the_offer_is_declined_when_keep_alive_is_off(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app, keepalive=0))
    client.sendall(packet())
    assert handler_for(connection.context).serve(connection) is False
    assert read_to_close(client).startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")


def test_the_offer_is_declined_when_stopping(pair, app) -> None:
    server, client = pair
    context = make_context(app)
    context.draining = True
    connection = uwsgi_connection(server, context)
    client.sendall(packet())
    assert handler_for(context).serve(connection) is False
    assert b"Wsgistack-Keepalive" not in read_to_close(client)


def test_max_requests_declines_from_the_last_request_on(pair, app) -> None:
    server, client = pair
    reached: list[int] = []
    context = make_context(app, max_requests=2, on_max_requests=lambda: reached.append(1))
    connection = uwsgi_connection(server, context)
    handler = handler_for(context)
    client.sendall(packet())
    assert handler.serve(connection) is True
    assert b"Wsgistack-Keepalive" in read_response(client)[0]
    client.sendall(packet())
    assert handler.serve(connection) is False
    assert b"Wsgistack-Keepalive" not in read_to_close(client)
    assert reached == [1] and context.draining


def test_an_unknown_offer_version_is_not_accepted(pair, app) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    vars_ = uwsgi_vars("GET", "/", WSGISTACK_KEEPALIVE="2")
    client.sendall(uwsgiproto.encode_packet(vars_))
    assert handler_for(connection.context).serve(connection) is False
    assert b"Wsgistack-Keepalive" not in read_to_close(client)
    assert "WSGISTACK_KEEPALIVE" not in app.environs[0]


# -- refusals: a status, the status line as the body, the message in the log ---------


def test_an_empty_vars_block_gets_400_and_a_log_line(pair, app, capfd) -> None:
    server, client = pair
    connection = uwsgi_connection(server, make_context(app))
    client.sendall(b"\x00\x00\x00\x00")
    assert handler_for(connection.context).serve(connection) is False
    raw = read_to_close(client)
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert raw.endswith(b"\r\n\r\n400 Bad Request\n")
    assert app.environs == []
    assert "uwsgi packet with an empty vars block" in capfd.readouterr().err


def test_http_errors_carry_no_parser_text(pair, app, capfd) -> None:
    server, client = pair
    connection = http_connection(server, make_context(app))
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert handler_for(connection.context).serve(connection) is False
    raw = read_to_close(client)
    assert raw.endswith(b"\r\n\r\n400 Bad Request\n"), raw
    assert b"Connection: close" in raw
    assert "bad HTTP request from 10.0.0.1:" in capfd.readouterr().err


# -- deadlines -----------------------------------------------------------------------


def trickle(client: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    for index in range(len(data)):
        if stop.wait(interval):
            return
        try:
            client.send(data[index : index + 1])
        except OSError:
            return


def serve_in_thread(handler: Handler, connection: ClientConnection) -> threading.Thread:
    thread = threading.Thread(target=handler.serve, args=(connection,))
    thread.start()
    return thread


def seconds_to_first_byte(client: socket.socket, started: float) -> tuple[float, bytes]:
    first = client.recv(65536)
    return time.monotonic() - started, first


@pytest.mark.parametrize("protocol", ["uwsgi", "http"])
def test_a_head_sent_a_byte_at_a_time_is_cut_at_the_header_deadline(
    pair, app, capfd, protocol: str
) -> None:
    server, client = pair
    context = make_context(app, header_timeout=0.5)
    if protocol == "uwsgi":
        connection: ClientConnection = uwsgi_connection(server, context)
        data = packet(offer=False)
    else:
        connection = http_connection(server, context)
        data = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\n\r\n"
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(client, data, 0.05, stop))
    started = time.monotonic()
    sender.start()
    serving = serve_in_thread(handler_for(context), connection)
    try:
        # socket-timeout (4 s) is never reached by one read: only the deadline cuts it.
        waited, first = seconds_to_first_byte(client, started)
    finally:
        stop.set()
        sender.join()
        serving.join()
    assert 0.4 <= waited < 1.5, waited
    assert first.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert first.endswith(b"\r\n\r\n408 Request Timeout\n")
    assert "request-header-timeout (0.5 s)" in capfd.readouterr().err
    assert app.environs == []
    assert is_closed(server)


@pytest.mark.parametrize("protocol", ["uwsgi", "http"])
def test_a_body_sent_a_byte_at_a_time_is_cut_at_the_body_deadline(
    pair, app, capfd, protocol: str
) -> None:
    server, client = pair
    context = make_context(app, body_timeout=0.5)
    if protocol == "uwsgi":
        connection: ClientConnection = uwsgi_connection(server, context)
        vars_ = uwsgi_vars("POST", "/echo", b"z" * 100)
        client.sendall(uwsgiproto.encode_packet(vars_))
    else:
        connection = http_connection(server, context)
        client.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(client, b"z" * 100, 0.05, stop))
    started = time.monotonic()
    sender.start()
    serving = serve_in_thread(handler_for(context), connection)
    try:
        waited, first = seconds_to_first_byte(client, started)
    finally:
        stop.set()
        sender.join()
        serving.join()
    # 0.5 s, + 1 s per KiB received: a few bytes add milliseconds.
    assert 0.4 <= waited < 1.5, waited
    assert first.startswith(b"408 Request Timeout", len("HTTP/1.1 "))
    assert "request body not received within request-body-timeout" in capfd.readouterr().err
    assert is_closed(server)


# -- HTTP ----------------------------------------------------------------------------


def test_http_pipelined_requests_are_served_then_the_connection_parks(pair, app) -> None:
    server, client = pair
    connection = http_connection(server, make_context(app))
    client.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert handler_for(connection.context).serve(connection) is True
    for _ in range(2):
        head, body = read_response(client)
        assert head.startswith(b"HTTP/1.1 200 OK") and body == b"hello"
    assert [environ["PATH_INFO"] for environ in app.environs] == ["/a", "/b"]
    assert app.environs[0]["SERVER_PORT"] == "8000"  # from the listener's template


def test_http_keepalive_zero_closes_every_connection(pair, app) -> None:
    server, client = pair
    connection = http_connection(server, make_context(app, keepalive=0))
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert handler_for(connection.context).serve(connection) is False
    assert b"Connection: close\r\n" in read_to_close(client)


def test_http_too_much_unread_body_says_connection_close(pair, app) -> None:
    server, client = pair
    connection = http_connection(server, make_context(app))
    client.sendall(b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
    assert handler_for(connection.context).serve(connection) is False
    head = read_to_close(client)
    assert head.startswith(b"HTTP/1.1 204 No Content\r\n") and b"Connection: close\r\n" in head


def test_the_log_record_has_host_user_agent_referer_and_content_length(pair, app) -> None:
    server, client = pair
    lines: list[Any] = []

    def keep(record: Any) -> str:
        lines.append(record)
        return format_uwsgi(record)

    connection = uwsgi_connection(server, make_context(app, format_request=keep))
    vars_ = uwsgi_vars("POST", "/echo", b"abc", HTTP_USER_AGENT="curl/8", HTTP_REFERER="http://r/")
    client.sendall(uwsgiproto.encode_packet(vars_) + b"abc")
    handler_for(connection.context).serve(connection)
    [record] = lines
    assert (record.host, record.user_agent, record.referer, record.content_length) == (
        "localhost",
        "curl/8",
        "http://r/",
        3,
    )
