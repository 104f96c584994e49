"""Checkpoints: C2SP signed notes (c2sp.org/signed-note) naming a tree (c2sp.org/tlog-checkpoint).

::

    <origin>
    <tree size, decimal>
    <root hash, base64>

    — <origin> base64(key ID || Ed25519 signature over the three lines above)

The key name is the log's origin; the key ID is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``.
Parsing and checking live in :mod:`.proof_verify` (the auditor's module); this one builds them.
``cryptography`` is imported only when a note is signed (as for the manifests' signer).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audit_pipeline.integrity.ed25519 import Ed25519Signer

CONTENT_TYPE = "text/plain; charset=utf-8"


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """The note text (what is signed): origin, size and base64 root, each line ending in a newline."""
    if not origin or any(c.isspace() or c == "+" for c in origin):
        raise ValueError(f"a log origin has no spaces or '+': {origin!r}")
    return f"{origin}\n{size}\n{base64.b64encode(root).decode('ascii')}\n"


def _raw_public_key(signer: Ed25519Signer) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign_checkpoint(origin: str, size: int, root: bytes, signer: Ed25519Signer) -> str:
    """The signed note of a tree head, signed by the manifests' Ed25519 key under the origin's name."""
    from audit_pipeline.integrity.proof_verify import ed25519_key_id

    text = checkpoint_text(origin, size, root)
    key_id = ed25519_key_id(origin, _raw_public_key(signer))
    signature = signer._sign(text.encode("utf-8"))
    return f"{text}\n\u2014 {origin} {base64.b64encode(key_id + signature).decode('ascii')}\n"


def verifier_key(origin: str, signer: Ed25519Signer) -> str:
    """The note verifier key ``<name>+<key ID hex>+<base64(0x01 || public key)>`` that Go's ``note`` package reads."""
    from audit_pipeline.integrity.proof_verify import ED25519_TYPE, ed25519_key_id

    raw = _raw_public_key(signer)
    return f"{origin}+{ed25519_key_id(origin, raw).hex()}+{base64.b64encode(bytes([ED25519_TYPE]) + raw).decode('ascii')}"
