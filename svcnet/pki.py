"""The cluster's credentials: a CA, the API server's serving certificate, the admin token.

First start writes them under the data dir; later starts reuse them. The serving certificate is
reissued (by the same CA) when the set of names it must cover changes, e.g. the node got a new
address, so clients that trust the CA keep working.

Files (all 0600 except the CA certificate):
    pki/ca.crt, pki/ca.key            the cluster CA (ECDSA P-256, 10 years)
    pki/apiserver.crt, .key           serving certificate signed by the CA (1 year)
    admin-token                       the admin bearer token
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Credentials:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    token: str


def _write(path: Path, data: bytes, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _ensure_ca(pki: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt, key = pki / "ca.crt", pki / "ca.key"
    if crt.exists() and key.exists():
        return x509.load_pem_x509_certificate(crt.read_bytes()), _load_key(key)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svcnet-ca")])
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(key, _key_pem(ca_key))
    _write(crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, ca_key


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)}


def ensure_credentials(data_dir: Path, dns_names: list[str], ips: list[str]) -> Credentials:
    """Load or create the CA, serving certificate and admin token under `data_dir`."""
    pki = data_dir / "pki"
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert, ca_key = _ensure_ca(pki)

    crt_path, key_path = pki / "apiserver.crt", pki / "apiserver.key"
    wanted = set(dns_names) | {str(ipaddress.ip_address(i)) for i in ips}
    reissue = True
    if crt_path.exists() and key_path.exists():
        current = x509.load_pem_x509_certificate(crt_path.read_bytes())
        expires = current.not_valid_after_utc
        reissue = not wanted <= _sans(current) or expires - _now() < datetime.timedelta(days=30)
    if reissue:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        alt = [x509.DNSName(n) for n in dns_names] + [
            x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write(key_path, _key_pem(key))
        _write(crt_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)

    token_path = data_dir / "admin-token"
    if not token_path.exists():
        _write(token_path, (secrets.token_urlsafe(32) + "\n").encode())
    token = token_path.read_text().strip()
    return Credentials(pki / "ca.crt", crt_path, key_path, token)


def write_kubeconfig(path: Path, server_url: str, creds: Credentials, name: str = "svcnet") -> None:
    """A kubeconfig (mode 0600) for the admin user, trusting the cluster CA."""
    import base64

    import yaml

    ca_b64 = base64.b64encode(creds.ca_cert.read_bytes()).decode()
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server_url,
                                                "certificate-authority-data": ca_b64}}],
        "users": [{"name": f"{name}-admin", "user": {"token": creds.token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin",
                                                "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    _write(path, yaml.safe_dump(cfg, sort_keys=False).encode())
