"""Key material for the simulator: a local CA, the HTTPS server certificate and the
RSA key that signs access tokens.

Everything lives in the simulator's state directory so that a second start reuses the
same CA (clients that trusted it once keep trusting it).  Files are regenerated when
missing, unreadable, expired (or about to expire), or when the server certificate does
not cover the requested host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
SIGNING_KEY = "token-signing-key.pem"
# A second CA and server certificate for the same names that no client is told to trust,
# served by the "untrusted_certificate" fault.
UNTRUSTED_PREFIX = "untrusted-"

_RENEW_MARGIN = dt.timedelta(days=2)


@dataclass(frozen=True)
class KeyMaterial:
    ca_cert_path: Path
    server_cert_path: Path
    server_key_path: Path
    signing_key: rsa.RSAPrivateKey
    signing_kid: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_key(path: Path) -> rsa.RSAPrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, rsa.RSAPrivateKey) else None


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _valid(cert: x509.Certificate | None) -> bool:
    if cert is None:
        return False
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - _RENEW_MARGIN > now


def _make_ca(state: Path, prefix: str = "") -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # another name for the untrusted CA, so that a client reports an unknown issuer rather
    # than a bad signature from the CA it trusts
    label = "dataverse_sim untrusted CA" if prefix else "dataverse_sim local CA"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dataverse_sim"),
            x509.NameAttribute(NameOID.COMMON_NAME, label),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(state / (prefix + CA_KEY), _key_pem(key))
    _write_public(state / (prefix + CA_CERT), cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _san_entries(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    if host and host not in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "::"):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _covers(cert: x509.Certificate, host: str) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    wanted = _san_entries(host)
    return all(name in san for name in wanted)


def _make_server(
    state: Path,
    host: str,
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    prefix: str = "",
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=397))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_san_entries(host)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(state / (prefix + SERVER_KEY), _key_pem(key))
    _write_public(state / (prefix + SERVER_CERT), cert.public_bytes(serialization.Encoding.PEM))


def _ensure_chain(state: Path, host: str, prefix: str = "") -> None:
    """Keep (or regenerate) a CA and a server certificate it issued for ``host``; a server
    certificate that lacks one of the names (e.g. DNS:localhost, from older versions) is
    replaced."""
    ca_cert = _load_cert(state / (prefix + CA_CERT))
    ca_key = _load_key(state / (prefix + CA_KEY))
    ca_ok = (
        _valid(ca_cert)
        and ca_key is not None
        and ca_cert.public_key().public_numbers() == ca_key.public_key().public_numbers()
    )
    if not ca_ok:
        ca_cert, ca_key = _make_ca(state, prefix)
        server_ok = False
    else:
        server_cert = _load_cert(state / (prefix + SERVER_CERT))
        server_key = _load_key(state / (prefix + SERVER_KEY))
        server_ok = (
            _valid(server_cert)
            and server_key is not None
            and server_cert.issuer == ca_cert.subject
            and server_cert.public_key().public_numbers()
            == server_key.public_key().public_numbers()
            and _covers(server_cert, host)
        )
        if server_ok:
            try:
                ca_cert.public_key().verify(
                    server_cert.signature,
                    server_cert.tbs_certificate_bytes,
                    _padding(),
                    server_cert.signature_hash_algorithm,
                )
            except Exception:
                server_ok = False
    if not server_ok:
        _make_server(state, host, ca_cert, ca_key, prefix)


def ensure_key_material(state_dir: str | os.PathLike[str], host: str = "127.0.0.1") -> KeyMaterial:
    """Load (or create) the CA, server certificate and token-signing key in ``state_dir``."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    _ensure_chain(state, host)

    signing_key = _load_key(state / SIGNING_KEY)
    if signing_key is None:
        signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(state / SIGNING_KEY, _key_pem(signing_key))
    der = signing_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = hashlib.sha256(der).hexdigest()[:32]
    return KeyMaterial(
        ca_cert_path=(state / CA_CERT).resolve(),
        server_cert_path=(state / SERVER_CERT).resolve(),
        server_key_path=(state / SERVER_KEY).resolve(),
        signing_key=signing_key,
        signing_kid=kid,
    )


def ensure_untrusted_certificate(
    state_dir: str | os.PathLike[str], host: str = "127.0.0.1"
) -> tuple[Path, Path]:
    """(certificate, key) paths of a server certificate for the same names as the real one,
    issued by a throwaway CA that is never handed to clients; made once per state dir."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    _ensure_chain(state, host, UNTRUSTED_PREFIX)
    return (
        (state / (UNTRUSTED_PREFIX + SERVER_CERT)).resolve(),
        (state / (UNTRUSTED_PREFIX + SERVER_KEY)).resolve(),
    )


def _padding():
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.PKCS1v15()
