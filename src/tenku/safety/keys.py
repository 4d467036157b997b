"""Signing keys for C2PA: a local CA and a leaf certificate, created on first use.

C2PA validators reject self-signed signing certificates, so tenku makes a small private CA
(ECDSA P-256) and a leaf certificate it signs, with the extensions C2PA asks for (digital
signature key usage, the emailProtection and documentSigning extended key usages, no CA
rights). They live in ``$TENKU_HOME/keys`` (default ``~/.local/share/tenku/keys``):
``ca.pem``/``ca.key`` and ``signer.pem`` (leaf then CA)/``signer.key``. The folder is written
whole to a temporary sibling and renamed into place, so concurrent first runs agree on one CA,
and private keys are mode 600. Operators with a real certificate set ``TENKU_SIGN_CERT`` (a PEM
chain, leaf first) and ``TENKU_SIGN_KEY`` (its PEM private key) instead; ``TENKU_TRUST_ANCHORS``
(PEM) then names the roots that ``tenku verify`` trusts.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ENV_HOME = "TENKU_HOME"
ENV_CERT, ENV_KEY, ENV_ANCHORS = "TENKU_SIGN_CERT", "TENKU_SIGN_KEY", "TENKU_TRUST_ANCHORS"
DEFAULT_HOME = Path("~/.local/share/tenku")
CA_DAYS, LEAF_DAYS = 3650, 825
_DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
_FILES = ("ca.pem", "ca.key", "signer.pem", "signer.key")


@dataclass(frozen=True)
class SigningIdentity:
    """PEM text of what signs manifests (``alg`` is C2PA's name, e.g. ``es256``)."""

    cert_chain: str  # leaf certificate first, then its issuers
    private_key: str
    trust_anchors: str  # root certificates a verifier should trust ("" when unknown)
    alg: str = "es256"
    source: str = "local"  # "local" (the CA made here) or "configured" (from the environment)


def tenku_home() -> Path:
    """``$TENKU_HOME``, else ``~/.local/share/tenku``."""
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser()


def keys_dir() -> Path:
    """Where the local CA and leaf live: ``tenku_home() / "keys"``."""
    return tenku_home() / "keys"


def load_identity(directory: Path | None = None) -> SigningIdentity:
    """The operator's configured certificate, else the local one (made on first call)."""
    cert, key = os.environ.get(ENV_CERT), os.environ.get(ENV_KEY)
    if cert or key:
        if not (cert and key):
            raise ValueError(f"{ENV_CERT} and {ENV_KEY}: set both or neither")
        anchors = os.environ.get(ENV_ANCHORS)
        return SigningIdentity(
            cert_chain=_read(Path(cert), ENV_CERT),
            private_key=_read(Path(key), ENV_KEY),
            trust_anchors=_read(Path(anchors), ENV_ANCHORS) if anchors else "",
            alg=_alg_for(_read(Path(key), ENV_KEY)),
            source="configured",
        )
    directory = keys_dir() if directory is None else Path(directory)
    if not all((directory / name).is_file() for name in _FILES):
        create_local_ca(directory)
    return SigningIdentity(
        cert_chain=(directory / "signer.pem").read_text(),
        private_key=(directory / "signer.key").read_text(),
        trust_anchors=(directory / "ca.pem").read_text(),
    )


def local_trust_anchors(directory: Path | None = None) -> str:
    """PEM roots ``tenku verify`` trusts: ``TENKU_TRUST_ANCHORS`` and the local CA if present."""
    parts = []
    anchors = os.environ.get(ENV_ANCHORS)
    if anchors:
        parts.append(_read(Path(anchors), ENV_ANCHORS))
    ca = (keys_dir() if directory is None else Path(directory)) / "ca.pem"
    if ca.is_file():
        parts.append(ca.read_text())
    return "".join(parts)


def create_local_ca(directory: Path) -> None:
    """Write a fresh CA and leaf into ``directory`` unless another process got there first.

    Everything is written to a hidden sibling folder, then renamed into place in one step;
    if ``directory`` already holds a complete set, the new one is thrown away.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}")
    tmp.mkdir(mode=0o700)
    try:
        for name, data in _make_ca_and_leaf().items():
            path = tmp / name
            fd = os.open(
                path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if "key" in name else 0o644
            )
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()  # an empty folder made by hand: take its place
        try:
            tmp.rename(directory)
        except OSError as error:
            if not all((directory / name).is_file() for name in _FILES):
                raise ValueError(
                    f"keys: {directory} holds an incomplete key set (need {', '.join(_FILES)}); "
                    "move it away and tenku makes a new local CA"
                ) from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _make_ca_and_leaf() -> dict[str, bytes]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("tenku local CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    eku = [ExtendedKeyUsageOID.EMAIL_PROTECTION, _DOCUMENT_SIGNING]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("tenku signer"))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "ca.pem": ca.public_bytes(pem),
        "ca.key": _key_pem(ca_key),
        "signer.pem": leaf.public_bytes(pem) + ca.public_bytes(pem),
        "signer.key": _key_pem(leaf_key),
    }


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tenku (self-hosted)"),
        ]
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _alg_for(key_pem: str) -> str:
    """C2PA algorithm name for a PEM private key (ECDSA P-256/384/521 or Ed25519)."""
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        bits = {256: "es256", 384: "es384", 521: "es512"}.get(key.curve.key_size)
        if bits:
            return bits
    if type(key).__name__.startswith("Ed25519"):
        return "ed25519"
    raise ValueError(f"{ENV_KEY}: unsupported key type {type(key).__name__} (use ECDSA or Ed25519)")


def _read(path: Path, what: str) -> str:
    try:
        return path.expanduser().read_text()
    except OSError as error:
        raise ValueError(f"{what}: cannot read {path} ({error.strerror or error})") from error
