"""TLS for the listens with ``ssl``: one ``ssl.SSLContext`` per certificate, chosen by SNI.

Theory of operation
-------------------
The contexts are built from the config's files (``TlsContexts.build``) by the
master when it opens a configuration's generation, before the workers fork:
a reload (SIGHUP) reads the certificate and key files again, and every
worker of one generation inherits the very same contexts.  Sharing them is
what makes session resumption work across workers: OpenSSL draws a
context's session-ticket keys when it is created, so a ticket issued by one
worker is accepted by any other (the kernel spreads a client's connections
over the workers with ``SO_REUSEPORT``).

For each listen with ``ssl`` there is the context of its default server,
which the handshake starts with, and one per other server block on that
address that has its own certificate.  ``sni_callback`` looks the client's
SNI name up the way the ``Host`` header is looked up (``Router.server_for``)
and switches the connection to that server's context.  As in nginx, only the
certificate and key follow the switch: the protocol versions, ciphers and
ALPN of a connection are those of the listen's default server, because
OpenSSL has negotiated them from the first context's settings.

``check_pair`` is what ``edge -t`` runs for each server's certificate and
key: a file that is not PEM, a key that does not belong to the certificate,
or an encrypted key (edge never asks for a passphrase) is an error that
names the file.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

from edge.config.schema import EdgeConfig, Listen, Server
from edge.routing import Router

ALPN_HTTP1 = "http/1.1"
ALPN_H2 = "h2"

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class TlsConfigError(Exception):
    """A certificate or key that cannot be used; the message names the file."""


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    # Without a password callback OpenSSL would prompt on the terminal for one.
    raise _EncryptedKey


def check_pair(certificate: str, key: str) -> tuple[str, str] | None:
    """What is wrong with a certificate and key pair: (which, message), or None.

    ``which`` is ``"ssl_certificate"`` or ``"ssl_certificate_key"``, the
    directive whose file is at fault.
    """
    try:
        _load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), certificate, key)
    except TlsConfigError as exc:
        text = str(exc)
        which = "ssl_certificate_key" if text.startswith(key + ":") else "ssl_certificate"
        return which, text
    return None


def _load_pair(context: ssl.SSLContext, certificate: str, key: str) -> None:
    try:
        with open(certificate, "rb") as handle:
            cert_text = handle.read()
        with open(key, "rb") as handle:
            key_text = handle.read()
    except OSError as exc:
        raise TlsConfigError(f"{exc.filename}: cannot be read ({exc.strerror})") from None
    if b"-----BEGIN CERTIFICATE-----" not in cert_text:
        raise TlsConfigError(f"{certificate}: not a PEM certificate")
    if b"PRIVATE KEY-----" not in key_text:
        raise TlsConfigError(f"{key}: not a PEM private key")
    if b"ENCRYPTED" in key_text:
        raise TlsConfigError(f"{key}: the key is encrypted; edge cannot ask for its passphrase")
    try:
        context.load_cert_chain(certificate, key, password=_no_passphrase)
    except _EncryptedKey:
        raise TlsConfigError(
            f"{key}: the key is encrypted; edge cannot ask for its passphrase"
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or ""
        if "KEY_VALUES_MISMATCH" in reason or "key values mismatch" in str(exc):
            raise TlsConfigError(
                f"{key}: does not match the certificate in {certificate}"
            ) from None
        # Which file did OpenSSL choke on?  The certificate parses on its own or not.
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            probe.load_verify_locations(cadata=cert_text.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError):
            raise TlsConfigError(f"{certificate}: not a valid PEM certificate ({reason})") from None
        raise TlsConfigError(f"{key}: not a valid PEM private key ({reason})") from None


def server_context(server: Server, listen: Listen) -> ssl.SSLContext:
    """A server-side context with ``server``'s certificate and TLS settings."""
    assert server.ssl_certificate is not None and server.ssl_certificate_key is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    versions = [_VERSIONS[name] for name in server.ssl_protocols]
    context.minimum_version = min(versions)
    context.maximum_version = max(versions)
    # Client-initiated renegotiation only serves a CPU-exhaustion attack (nginx refuses it).
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    if server.ssl_prefer_server_ciphers:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if not server.ssl_session_tickets:
        context.options |= ssl.OP_NO_TICKET  # TLS 1.2 tickets
        context.num_tickets = 0  # TLS 1.3 tickets
    try:
        context.set_ciphers(server.ssl_ciphers)
    except ssl.SSLError:
        raise TlsConfigError(f"ssl_ciphers: no cipher matches {server.ssl_ciphers!r}") from None
    _load_pair(context, server.ssl_certificate, server.ssl_certificate_key)
    context.set_alpn_protocols([ALPN_H2, ALPN_HTTP1] if listen.http2 else [ALPN_HTTP1])
    return context


class ListenTls:
    """The contexts of one ``ssl`` listen: its default server's, and one per certificate."""

    __slots__ = ("listen", "context", "_by_server", "_router")

    def __init__(self, listen: Listen, servers: Iterable[Server], router: Router) -> None:
        self.listen = listen
        self._router = router
        default = router.server_for(listen.host, listen.port, None)
        self._by_server: dict[int, ssl.SSLContext] = {}
        built: dict[tuple[str, str], ssl.SSLContext] = {}
        for server in servers:
            assert server.ssl_certificate is not None and server.ssl_certificate_key is not None
            pair = (server.ssl_certificate, server.ssl_certificate_key)
            if pair not in built:
                built[pair] = server_context(server, listen)
            self._by_server[id(server)] = built[pair]
        self.context = self._by_server[id(default)]
        self.context.sni_callback = self._choose

    def _choose(self, connection: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        if name is None:
            return None
        server = self._router.server_for(self.listen.host, self.listen.port, name)
        chosen = self._by_server.get(id(server))
        if chosen is not None and chosen is not context:
            connection.context = chosen
        return None

    def context_for(self, name: str | None) -> ssl.SSLContext:
        """The context a handshake naming ``name`` ends with (for tests and ``edge -t``)."""
        if name is None:
            return self.context
        server = self._router.server_for(self.listen.host, self.listen.port, name)
        return self._by_server.get(id(server), self.context)


class TlsContexts:
    """Every ``ssl`` listen's contexts for one configuration."""

    def __init__(self, by_listen: dict[Listen, ListenTls]) -> None:
        self._by_listen = by_listen

    @classmethod
    def build(cls, config: EdgeConfig) -> TlsContexts:
        """Read every certificate and key of ``config``; ``TlsConfigError`` names a bad file."""
        router = Router(config)
        servers: dict[Listen, list[Server]] = {}
        ssl_listens: dict[Listen, Listen] = {}
        for server in config.servers:
            for listen in server.listen:
                if listen.ssl:
                    ssl_listens.setdefault(listen, listen)
                    servers.setdefault(listen, []).append(server)
        return cls(
            {
                listen: ListenTls(listen, [s for s in servers[listen] if s.ssl_certificate], router)
                for listen in ssl_listens.values()
            }
        )

    def for_listen(self, listen: Listen) -> ListenTls | None:
        return self._by_listen.get(listen)

    def __bool__(self) -> bool:
        return bool(self._by_listen)
