"""Certificates for the local SASL_SSL broker, generated for the run with ``cryptography``.

``ensure_certificates(folder)`` writes (once) ``ca.pem`` (a self-signed CA) and ``broker.pem`` (the
broker's unencrypted private key and its certificate for 127.0.0.1/localhost, signed by the CA): Kafka
reads both as PEM stores; clients trust ``ca.pem`` (``ssl.ca.location``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ensure_certificates(folder: Path) -> tuple[Path, Path]:
    """``(ca.pem, broker.pem)`` in ``folder``, created on first call (valid 30 days)."""
    ca_file, broker_file = folder / "ca.pem", folder / "broker.pem"
    if ca_file.exists() and broker_file.exists():
        return ca_file, broker_file
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = (x509.CertificateBuilder().subject_name(_name("cdx local CA")).issuer_name(_name("cdx local CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    san = x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(san, critical=False).sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_file.write_bytes(ca.public_bytes(pem))
    broker_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
                            + cert.public_bytes(pem) + ca.public_bytes(pem))
    broker_file.chmod(0o600)
    return ca_file, broker_file
