"""Certificates and keys a throw-away kube-apiserver needs, made with `cryptography`.

As envtest does: a CA, a serving certificate for 127.0.0.1/localhost signed by it, and
an RSA key for signing service-account tokens. Everything lives in a temporary folder
for one test session.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServerPki:
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    service_account_public_key: Path


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def write_pki(folder: Path) -> ServerPki:
    """A CA, a serving certificate for 127.0.0.1 and a service-account key in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    ca_key = _key()
    ca = (x509.CertificateBuilder().subject_name(_name("finetune-test-ca")).issuer_name(_name("finetune-test-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    serving_key = _key()
    names = [x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc"),
             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    serving = (x509.CertificateBuilder().subject_name(_name("kube-apiserver")).issuer_name(ca.subject)
               .public_key(serving_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.SubjectAlternativeName(names), critical=False)
               .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .sign(ca_key, hashes.SHA256()))

    sa_key = _key()
    sa_public = folder / "sa.pub"
    sa_public.write_bytes(sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    ca_path, serving_path = folder / "ca.crt", folder / "apiserver.crt"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    serving_path.write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    return ServerPki(ca_cert=ca_path, serving_cert=serving_path,
                     serving_key=_write_key(serving_key, folder / "apiserver.key"),
                     service_account_key=_write_key(sa_key, folder / "sa.key"),
                     service_account_public_key=sa_public)
