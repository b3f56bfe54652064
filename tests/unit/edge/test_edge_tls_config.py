"""The TLS and HTTP/2 directives: how they are written, and every way ``edge -t`` refuses
them, each error naming the key and the file (certificates made by the real openssl)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config.load import ConfigErrors, build_config, parse_listen
from edge.config.schema import MODERN_CIPHERS, Listen
from edge.tls import TlsContexts, check_pair
from tests.support.certs import Pair, TestCa, encrypted_key

LOCATIONS = [{"path": "/", "return": 204}]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return TestCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def pair(ca: TestCa) -> Pair:
    return ca.issue("a.test", alt_names=("IP:127.0.0.1",))


@pytest.fixture(scope="module")
def other(ca: TestCa) -> Pair:
    return ca.issue("b.test")


def problems(data: object) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        build_config(data)
    return [str(issue) for issue in info.value.issues]


def tls_server(pair: Pair, **extra: object) -> dict[str, object]:
    return {
        "listen": "127.0.0.1:8443 ssl http2",
        "ssl_certificate": str(pair.certificate),
        "ssl_certificate_key": str(pair.key),
        "locations": LOCATIONS,
        **extra,
    }


def test_listen_options_in_both_forms() -> None:
    assert parse_listen("443 ssl") == Listen(port=443)
    listen = parse_listen("127.0.0.1:8443 ssl http2")
    assert (listen.host, listen.port, listen.ssl, listen.http2) == ("127.0.0.1", 8443, True, True)
    mapped = parse_listen({"address": "[::1]:8443", "ssl": True, "http2": "on"})
    assert (mapped.host, mapped.port, mapped.ssl, mapped.http2) == ("::1", 8443, True, True)
    assert parse_listen(8080).scheme == "http" and listen.scheme == "https"
    with pytest.raises(ValueError, match="unknown listen option 'sll' \\(did you mean 'ssl'\\?\\)"):
        parse_listen("443 sll")


def test_the_defaults_are_modern(pair: Pair) -> None:
    server = build_config({"servers": [tls_server(pair)]}).servers[0]
    assert server.ssl_protocols == ("TLSv1.2", "TLSv1.3")
    assert server.ssl_ciphers == MODERN_CIPHERS
    assert server.ssl_session_tickets and server.ssl_prefer_server_ciphers
    assert server.http2_max_concurrent_streams == 128
    context = TlsContexts.build(build_config({"servers": [tls_server(pair)]}))
    listen_tls = context.for_listen(Listen("127.0.0.1", 8443))
    assert listen_tls is not None
    ctx = listen_tls.context
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    names = {cipher["name"] for cipher in ctx.get_ciphers() if cipher["protocol"] == "TLSv1.2"}
    assert names == set(MODERN_CIPHERS.split(":"))
    assert all("GCM" in name or "CHACHA20" in name for name in names)
    assert ctx.options & ssl.OP_NO_RENEGOTIATION and ctx.options & ssl.OP_NO_COMPRESSION


def test_every_tls_mistake_is_reported_with_its_key(pair: Pair, tmp_path: Path) -> None:
    assert problems(
        {
            "servers": [
                {"listen": "8443 ssl", "locations": LOCATIONS},
                {"listen": "8444 http2", "locations": LOCATIONS},
                {
                    "listen": {"address": 8445, "ssl": "yes", "x": 1},
                    "ssl_certificate": str(pair.certificate),
                    "ssl_protocols": ["TLSv1.1"],
                    "http2_max_concurrent_streams": 0,
                    "locations": LOCATIONS,
                },
            ]
        }
    ) == [
        "servers[0].ssl_certificate: missing: listen 0.0.0.0:8443 has ssl, which needs a certificate",
        "servers[1].listen[0]: http2 on 0.0.0.0:8444 needs ssl: HTTP/2 is offered by ALPN in "
        "the TLS handshake (h2c, HTTP/2 in clear text, is not implemented)",
        "servers[2].ssl_certificate_key: missing: ssl_certificate needs its key",
        "servers[2].listen.ssl: expected true or false, got 'yes'",
        "servers[2].listen.x: unknown key",
        "servers[2].ssl_protocols[0]: expected one of TLSv1.2, TLSv1.3, got 'TLSv1.1' "
        "(did you mean 'TLSv1.3'?)",
        "servers[2].http2_max_concurrent_streams: must be at least 1, got 0",
    ]


def test_servers_on_one_address_agree_on_its_options(pair: Pair) -> None:
    assert problems(
        {"servers": [tls_server(pair), {"listen": "127.0.0.1:8443", "locations": LOCATIONS}]}
    ) == [
        "servers[1].listen[0]: 127.0.0.1:8443 is plain HTTP here but ssl http2 in servers[0]: "
        "servers sharing an address must give it the same options"
    ]


def test_a_file_that_cannot_be_used_is_named(pair: Pair, other: Pair, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello\n")
    locked = encrypted_key(tmp_path)
    unreadable = tmp_path / "secret.key"
    unreadable.write_bytes(pair.key.read_bytes())
    unreadable.chmod(0)
    cases = [
        (missing, pair.key, f"ssl_certificate: {missing}: no such file"),
        (not_pem, pair.key, f"ssl_certificate: {not_pem}: not a PEM certificate"),
        (pair.certificate, not_pem, f"ssl_certificate_key: {not_pem}: not a PEM private key"),
        (
            pair.certificate,
            other.key,
            f"ssl_certificate_key: {other.key}: does not match the certificate in "
            f"{pair.certificate}",
        ),
        (
            pair.certificate,
            locked,
            f"ssl_certificate_key: {locked}: the key is encrypted; edge cannot ask for its "
            "passphrase",
        ),
    ]
    if os.geteuid() != 0:  # root reads any file
        cases.append(
            (
                pair.certificate,
                unreadable,
                f"ssl_certificate_key: {unreadable}: cannot be read (Permission denied)",
            )
        )
    for certificate, key, message in cases:
        data = {
            "servers": [
                {
                    "listen": "8443 ssl",
                    "ssl_certificate": str(certificate),
                    "ssl_certificate_key": str(key),
                    "locations": LOCATIONS,
                }
            ]
        }
        assert problems(data) == [f"servers[0].{message}"]
    assert check_pair(str(pair.certificate), str(pair.key)) is None


def test_relative_paths_resolve_against_the_yaml_file(pair: Pair, tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    for source, name in ((pair.certificate, "site.crt"), (pair.key, "site.key")):
        (tmp_path / "tls" / name).write_bytes(source.read_bytes())
    config = build_config(
        {
            "servers": [
                {
                    "listen": "8443 ssl",
                    "ssl_certificate": "tls/site.crt",
                    "ssl_certificate_key": "tls/site.key",
                    "locations": LOCATIONS,
                }
            ]
        },
        base_dir=str(tmp_path),
    )
    assert config.servers[0].ssl_certificate == str(tmp_path / "tls" / "site.crt")


def test_edge_t_names_the_mismatched_key(pair: Pair, other: Pair, tmp_path: Path) -> None:
    config = tmp_path / "edge.yaml"
    config.write_text(
        "servers:\n"
        "  - listen: 127.0.0.1:8443 ssl\n"
        f"    ssl_certificate: {pair.certificate}\n"
        f"    ssl_certificate_key: {other.key}\n"
        "    locations: [{path: /, return: 204}]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "edge", "-t", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{config}: servers[0].ssl_certificate_key: {other.key}: does not match the certificate in "
        f"{pair.certificate}"
    )


def test_sni_chooses_the_server_blocks_context(pair: Pair, other: Pair) -> None:
    config = build_config(
        {
            "servers": [
                tls_server(pair, server_name=["a.test"]),
                tls_server(other, server_name=["b.test", "*.b.test"]),
            ]
        }
    )
    listen_tls = TlsContexts.build(config).for_listen(Listen("127.0.0.1", 8443))
    assert listen_tls is not None
    default = listen_tls.context
    assert listen_tls.context_for(None) is default
    assert listen_tls.context_for("unknown.test") is default
    assert listen_tls.context_for("a.test") is default
    assert listen_tls.context_for("b.test") is not default
    assert listen_tls.context_for("www.b.test") is listen_tls.context_for("b.test")
