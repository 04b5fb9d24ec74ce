"""The ext_proc port's TLS identity: ``tls.crt``/``tls.key`` from a folder, or self-signed.

Upstream serves TLS by default with a self-signed certificate made at start-up (Organization
"Inference Ext", ten years, ServerAuth) and Envoy connects without verifying it: the channel is
encrypted, and trust comes from the network path. We keep that, with one change: an ECDSA P-256
key instead of RSA 4096, which takes microseconds instead of seconds to generate on a small CPU.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from endpoint_picker.errors import ConfigError


def self_signed(hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[bytes, bytes]:
    """A fresh (key PEM, certificate PEM) pair valid for ten years."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Inference Ext")])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def load(cert_path: str | Path) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) from ``<cert_path>/tls.key`` and ``tls.crt``."""
    folder = Path(cert_path)
    pair = []
    for name in ("tls.key", "tls.crt"):
        path = folder / name
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read {name}: {err.strerror}", file=str(path)) from err
        if b"-----BEGIN" not in data:
            raise ConfigError("not a PEM file", file=str(path))
        pair.append(data)
    return pair[0], pair[1]


def reloading_credentials(cert_path: str | Path) -> Any:
    """Server credentials that pick up new ``tls.crt``/``tls.key`` files (``--enable-cert-reload``).

    gRPC asks the fetcher before each handshake (on its own thread, not the event loop); it
    answers a new configuration only when a file's modification time moved, so a certificate
    rotated by cert-manager is served from the next connection on, without a restart.
    """
    import grpc

    first, fetch = cert_fetcher(cert_path, grpc.ssl_server_certificate_configuration)
    return grpc.dynamic_ssl_server_credentials(first, fetch)


def cert_fetcher(cert_path: str | Path, configure: Any) -> tuple[Any, Any]:
    """(the first configuration, a fetcher): the fetcher answers ``configure([(key, cert)])``
    when ``tls.key``/``tls.crt`` changed since it last looked, else None (keep the current)."""
    folder = Path(cert_path)
    key, cert = load(folder)
    seen = [_mtimes(folder)]

    def fetch() -> Any:
        now = _mtimes(folder)
        if now == seen[0]:
            return None
        try:
            new_key, new_cert = load(folder)
        except ConfigError:
            return None  # half-written files: keep serving the old pair, try again next time
        seen[0] = now
        return configure([(new_key, new_cert)])

    return configure([(key, cert)]), fetch


def _mtimes(folder: Path) -> tuple[float, ...]:
    try:
        return tuple((folder / n).stat().st_mtime for n in ("tls.key", "tls.crt"))
    except OSError:
        return ()
