"""A throwaway PKI for tests: a CA, a server certificate for 127.0.0.1 and a client certificate.

Made with the `openssl` command (no Python crypto dependency); valid for one day. For tests of
TLS clients (the etcd probe against an etcd that requires client certificates), not for use
anywhere else: the keys are unencrypted files in a temporary directory.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class CertificateError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalPKI:
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise CertificateError("openssl not found")
    result = subprocess.run(  # noqa: S603 - fixed arguments, our own paths
        [binary, *args], capture_output=True, text=True, check=False, timeout=30
    )
    if result.returncode != 0:
        raise CertificateError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _issue(directory: Path, name: str, usage: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\n"
    )
    _openssl("req", *_CURVE, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-days", "1", "-out", str(cert), "-extfile", str(extensions),
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> LocalPKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
    _openssl(
        "req", "-x509", *_CURVE, "-keyout", str(ca_key), "-out", str(ca_cert), "-days", "1",
        "-subj", "/CN=medic-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    server_cert, server_key = _issue(directory, "server", "serverAuth", (ca_cert, ca_key))
    client_cert, client_key = _issue(directory, "client", "clientAuth", (ca_cert, ca_key))
    return LocalPKI(ca_cert, server_cert, server_key, client_cert, client_key)
