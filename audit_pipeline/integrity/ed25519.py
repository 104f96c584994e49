"""Ed25519 keys for manifests: loading, fingerprints, the signer and checking a signature.

Kept apart from :mod:`audit_pipeline.integrity.signing` so that ``cryptography`` (about 6.5 MB of
memory and 30 ms to import) is loaded only where an Ed25519 key is configured, pinned or met in
a signature: unsigned and HMAC-signed deployments never load it, the daily export included.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.layout import PUBLIC_KEY_KEY, public_key_key
from audit_pipeline.integrity.signer import Signer

__all__ = ["Ed25519Signer", "ed25519_key_id", "load_private_key", "load_public_key", "public_key_pem", "verifies"]


def ed25519_key_id(public_key: Ed25519PublicKey) -> str:
    """The key's fingerprint: ``sha256(raw public key)[:16]``, never the key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


class Ed25519Signer(Signer):
    algorithm = "ed25519"

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = ed25519_key_id(self.public_key)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A new random key (tests and benchmarks; production keys come from ``openssl genpkey``)."""
        return cls(Ed25519PrivateKey.generate())

    def private_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def _sign(self, payload: bytes) -> bytes:
        return self._key.sign(payload)

    def published_keys(self) -> list[tuple[str, bytes, str]]:
        pem = public_key_pem(self.public_key)
        return [(public_key_key(self.key_id), pem, "application/x-pem-file"), (PUBLIC_KEY_KEY, pem, "application/x-pem-file")]


def load_private_key(data: bytes, password: bytes | None, setting: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM, or a configuration error naming ``setting``."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError:
        raise ConfigError(f"{setting}: the key is encrypted; set integrity.private_key_passphrase (as ${{VAR}})") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            f"{setting}: not a PEM private key (or the passphrase is wrong); create one with `openssl genpkey -algorithm ed25519 -out manifest_key.pem`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{setting}: the key is not an Ed25519 key; create one with `openssl genpkey -algorithm ed25519`")
    return key


def load_public_key(data: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{where}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where}: not an Ed25519 public key")
    return key


def verifies(key: Ed25519PublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True
