"""The listeners' TLS certificate: the configured pair, or a self-signed one made on first run.

GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE name the pair. When
neither file exists, a self-signed ECDSA P-256 certificate is generated for
the local names; several gateway processes may start at once, so generation
holds a lock and each file appears whole (written aside, then renamed).
"""

import datetime
import fcntl
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

CERTIFICATE_LIFETIME = datetime.timedelta(days=365)


def server_ssl_context() -> ssl.SSLContext:
    """An SSLContext for the gateway's listeners (TLS 1.2 or newer), made from the server pair."""
    cert_file, key_file = ensure_certificate()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def certificate_der() -> bytes:
    """The DER bytes of the server certificate (SCRAM tls-server-end-point binds to its hash)."""
    cert_file, _key_file = ensure_certificate()
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return certificate.public_bytes(serialization.Encoding.DER)


def tls_server_end_point(der: bytes) -> bytes:
    """RFC 5929 channel binding data: the certificate hashed with its own signature hash.

    MD5 and SHA-1 are replaced by SHA-256, as the RFC says; libpq computes the
    same, so an operator's SHA-384 certificate binds as well as ours.
    """
    algorithm = x509.load_der_x509_certificate(der).signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, hashes.MD5 | hashes.SHA1):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return digest.finalize()


def ensure_certificate() -> tuple[Path, Path]:
    """Return (cert_file, key_file), generating a self-signed pair if neither exists."""
    cert_file = Path(settings.GATEHOUSE_TLS_CERT_FILE)
    key_file = Path(settings.GATEHOUSE_TLS_KEY_FILE)
    if cert_file.exists() and key_file.exists():
        return cert_file, key_file
    # Checked under the lock: a process generating the pair right now briefly has one file only.
    with _generation_lock(cert_file, key_file):
        if not (cert_file.exists() or key_file.exists()):
            _generate_pair(cert_file, key_file)
        _check_not_half_configured(cert_file, key_file)
    return cert_file, key_file


def _check_not_half_configured(cert_file: Path, key_file: Path) -> None:
    if cert_file.exists() == key_file.exists():
        return
    present, missing = (cert_file, key_file) if cert_file.exists() else (key_file, cert_file)
    raise ImproperlyConfigured(
        f"TLS listener certificate: {present} exists but {missing} does not. Provide both "
        "GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE, or remove the one that exists "
        "so that a self-signed pair is generated."
    )


@contextmanager
def _generation_lock(cert_file: Path, key_file: Path) -> Iterator[None]:
    lock_path = cert_file.parent / f".{cert_file.name}.lock"
    try:
        cert_file.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as error:
        _check_not_half_configured(cert_file, key_file)
        raise ImproperlyConfigured(f"Cannot create the TLS certificate in {cert_file.parent}: {error}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _generate_pair(cert_file: Path, key_file: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _self_signed_certificate(key)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file.parent.mkdir(parents=True, exist_ok=True)
    # The key lands first: a reader that sees the certificate can rely on the key.
    _write_atomically(key_file, key_pem, 0o600)
    _write_atomically(cert_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    fingerprint = certificate.fingerprint(hashes.SHA256()).hex(":").upper()
    logger.info("Generated a self-signed TLS certificate %s (SHA-256 %s)", cert_file, fingerprint)


def _self_signed_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    hostname = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Gatehouse on {hostname}"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(_alternative_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _alternative_names(hostname: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    if hostname and hostname.isascii() and hostname != "localhost":
        names.append(x509.DNSName(hostname))
    return names


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
