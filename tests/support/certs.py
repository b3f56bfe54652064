"""Test certificates made with Debian's ``openssl`` command: a CA of the test's own, and
server certificates it signs (EC P-256 keys: quick to make, what modern servers use)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{result.stderr}")


@dataclass(frozen=True)
class Pair:
    certificate: Path
    key: Path


class TestCa:
    """A certificate authority in ``directory`` (``ca.crt``), for one test."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "edge test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.certificate = directory / "ca.crt"
        self.key = directory / "ca.key"
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(self.key), "-out", str(self.certificate), "-days", "30",
            "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=directory,
        )  # fmt: skip

    def issue(self, name: str, *, alt_names: tuple[str, ...] = (), days: int = 30) -> Pair:
        """A server certificate for DNS ``name`` (and ``alt_names``: ``IP:127.0.0.1``)."""
        directory = self.directory
        key = directory / f"{name}.key"
        csr = directory / f"{name}.csr"
        certificate = directory / f"{name}.crt"
        extensions = directory / f"{name}.ext"
        sans = ",".join((f"DNS:{name}", *alt_names))
        extensions.write_text(
            f"subjectAltName={sans}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(self.certificate),
            "-CAkey", str(self.key), "-CAcreateserial", "-out", str(certificate),
            "-days", str(days), "-extfile", str(extensions),
            cwd=directory,
        )  # fmt: skip
        return Pair(certificate, key)


def encrypted_key(directory: Path, name: str = "locked") -> Path:
    """A private key protected by a passphrase (edge must refuse it, not prompt)."""
    key = directory / f"{name}.key"
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-aes256", "-pass", "pass:secret", "-out", str(key),
        cwd=directory,
    )  # fmt: skip
    return key
