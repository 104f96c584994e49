"""Check an ``audit-pipeline prove`` bundle offline: Python's standard library and ``cryptography``, nothing else.

This module is written to be read by an auditor and copied out of the project: it imports nothing
from ``audit_pipeline``, needs no archive, no database and no configuration.  What it checks:

1. the checkpoint(s) are C2SP signed notes (https://c2sp.org/signed-note, c2sp.org/tlog-checkpoint)
   carrying a valid Ed25519 signature by the public key *you* supply;
2. the event's leaf hash ``SHA-256(0x00 || event line)`` is included in the tree the checkpoint
   names, at the leaf index given (RFC 9162 §2.1.3.2);
3. that tree is a prefix of the newest tree in the bundle (consistency, RFC 9162 §2.1.4.2), and of
   none smaller than a checkpoint you already hold (``known`` checkpoints: a rolled-back log fails).

Run it as ``python -m audit_pipeline.integrity.proof_verify BUNDLE --public-key KEY`` or through
``audit-pipeline verify-proof``.  Every failure is one line: :class:`ProofError`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BUNDLE_FORMAT = "audit_pipeline.proof/1"
CONSISTENCY_FORMAT = "audit_pipeline.consistency/1"
HASH_SIZE = 32
#: C2SP signed-note signature type of Ed25519.
ED25519_TYPE = 0x01


class ProofError(Exception):
    """The bundle does not prove what it claims; the message is one line saying what failed."""


# -- RFC 6962 hashing ------------------------------------------------------------------------------
def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of one entry (RFC 6962 §2.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check_hashes(path: list[bytes], what: str) -> None:
    if any(len(h) != HASH_SIZE for h in path):
        raise ProofError(f"the {what} holds a hash that is not {HASH_SIZE} bytes")


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes:
    """The root a leaf and its audit path lead to (RFC 9162 §2.1.3.2, steps 1-6)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} entries")
    if len(leaf) != HASH_SIZE:
        raise ProofError(f"the leaf hash is {len(leaf)} bytes, not {HASH_SIZE}")
    _check_hashes(path, "inclusion path")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("the inclusion path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion path is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> None:
    """Raise :class:`ProofError` unless ``leaf`` is entry ``index`` of the tree of ``size`` entries with ``root``."""
    if root_from_inclusion(index, size, leaf, path) != root:
        raise ProofError(f"the inclusion path of leaf {index} does not lead to the root of the tree of {size} entries")


def verify_consistency(size1: int, size2: int, path: list[bytes], root1: bytes, root2: bytes) -> None:
    """Raise :class:`ProofError` unless the tree (size1, root1) is a prefix of (size2, root2) (RFC 9162 §2.1.4.2)."""
    if size2 < size1:
        raise ProofError(f"the newer tree has {size2} entries, fewer than the {size1} of the older one: the log was rolled back")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    _check_hashes(path, "consistency path")
    if size1 == size2:
        if path:
            raise ProofError("two trees of the same size need an empty consistency path")
        if root1 != root2:
            raise ProofError(f"two trees of {size1} entries have different roots: the log was rewritten")
        return
    if not path:
        raise ProofError("the consistency path is empty")
    proof = list(path)
    if size1 & (size1 - 1) == 0:  # an exact power of 2: the old root is itself a node of the new tree
        proof.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofError("the consistency path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != root1 or sr != root2:
        raise ProofError(f"the tree of {size1} entries is not a prefix of the tree of {size2} entries: the log was rewritten")


# -- C2SP signed notes and checkpoints ---------------------------------------------------------------
def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """``SHA-256(key name || 0x0A || 0x01 || public key)[:4]`` (c2sp.org/signed-note)."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519_TYPE]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: the log's name, its size and root hash, and the note it came from."""

    origin: str
    size: int
    root: bytes
    note: str


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """The note text (with its final newline) and its ``(key name, key ID + signature)`` lines."""
    if "\n\n" not in note or not note.endswith("\n"):
        raise ProofError("the checkpoint is not a signed note (text, a blank line, signature lines)")
    cut = note.rindex("\n\n")
    text, lines = note[: cut + 1], note[cut + 2 :].splitlines()
    signatures: list[tuple[str, bytes]] = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            raise ProofError(f"the checkpoint has a malformed signature line: {line[:60]!r}")
        try:
            signatures.append((parts[1], base64.b64decode(parts[2], validate=True)))
        except binascii.Error:
            raise ProofError("a checkpoint signature is not base64") from None
    if not signatures:
        raise ProofError("the checkpoint carries no signature")
    return text, signatures


def verify_checkpoint(note: str, public_key: Ed25519PublicKey) -> Checkpoint:
    """Parse a checkpoint note whose Ed25519 signature by ``public_key`` verifies, or raise :class:`ProofError`."""
    text, signatures = split_note(note)
    lines = text.split("\n")
    if len(lines) < 4:
        raise ProofError("the checkpoint text needs an origin, a tree size and a root hash line")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_id = ed25519_key_id(origin, raw)
    ours = [sig for name, sig in signatures if name == origin and sig[:4] == key_id]
    if not ours:
        raise ProofError(f"the checkpoint of {origin!r} is not signed by this public key (no signature with its key ID {key_id.hex()})")
    for sig in ours:
        try:
            public_key.verify(sig[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise ProofError(f"the checkpoint signature of {origin!r} does not verify: the checkpoint was altered or signed by another key") from None
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise ProofError(f"the checkpoint tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise ProofError("the checkpoint root hash is not base64") from None
    if len(root) != HASH_SIZE:
        raise ProofError(f"the checkpoint root hash is {len(root)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin=origin, size=int(size_text), root=root, note=note)


# -- keys -----------------------------------------------------------------------------------------
def load_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (``manifests/public_key.pem``) or a note verifier key ``name+hash+base64``."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except (ValueError, UnsupportedAlgorithm):
            raise ProofError("the public key is not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ProofError("the public key is not an Ed25519 key")
        return key
    parts = text.decode("utf-8", "replace").split("+")
    if len(parts) == 3:
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) == 33 and raw[0] == ED25519_TYPE:
            return Ed25519PublicKey.from_public_bytes(raw[1:])
    raise ProofError("the public key is neither a PEM Ed25519 public key nor a signed-note verifier key (name+hash+base64)")


# -- bundles --------------------------------------------------------------------------------------
def _hashes(bundle: dict[str, Any], member: str) -> list[bytes]:
    values = bundle.get(member)
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ProofError(f"the bundle's {member} is not a list of base64 hashes")
    try:
        return [base64.b64decode(v, validate=True) for v in values]
    except binascii.Error:
        raise ProofError(f"the bundle's {member} holds a value that is not base64") from None


def _integer(bundle: dict[str, Any], member: str) -> int:
    value = bundle.get(member)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"the bundle's {member} is not a non-negative integer")
    return value


def _text(bundle: dict[str, Any], member: str) -> str:
    value = bundle.get(member)
    if not isinstance(value, str):
        raise ProofError(f"the bundle has no {member}")
    return value


def _same_log(first: Checkpoint, second: Checkpoint) -> None:
    if first.origin != second.origin:
        raise ProofError(f"the checkpoints name different logs ({first.origin!r} and {second.origin!r})")


def check_known(latest: Checkpoint, known: list[Checkpoint]) -> None:
    """A checkpoint the auditor already holds may not be bigger than the newest one (a rollback) or differ at the same size."""
    for old in known:
        _same_log(old, latest)
        if old.size > latest.size:
            raise ProofError(f"the log was rolled back: you hold a checkpoint of {old.size} entries, the bundle's newest has {latest.size}")
        if old.size == latest.size and old.root != latest.root:
            raise ProofError(f"the log was rewritten: two checkpoints of {old.size} entries with different roots")


def check_timestamp(bundle: dict[str, Any], member: str, note: str, tsa_roots: bytes) -> str:
    """The RFC 3161 reply ``<member>_timestamp`` over ``note``, checked against the TSA roots (PEM); when it was made.

    Needs ``rfc3161-client`` (loaded only here): the reply is granted, signed by a time-stamping
    certificate that chains to the roots, and its message imprint is the note's SHA-256."""
    from cryptography import x509
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    raw = bundle.get(f"{member}_timestamp")
    if not isinstance(raw, str):
        raise ProofError(f"the bundle carries no timestamp of its {member.replace('_', ' ')} (the log was not timestamped then)")
    try:
        response = decode_timestamp_response(base64.b64decode(raw, validate=True))
        roots = x509.load_pem_x509_certificates(tsa_roots)
    except (ValueError, binascii.Error) as exc:
        raise ProofError(f"the {member.replace('_', ' ')} timestamp or the TSA certificates cannot be read ({exc})") from None
    builder = VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify_message(response, note.encode("utf-8"))
    except (VerificationError, ValueError) as exc:
        raise ProofError(f"the {member.replace('_', ' ')} timestamp does not verify: {exc}") from None
    return response.tst_info.gen_time.isoformat()


def verify_bundle(bundle: Any, public_key: Ed25519PublicKey, known_checkpoints: tuple[str, ...] = (), tsa_roots: bytes | None = None) -> str:
    """Check an inclusion or a consistency bundle; return a one-line summary or raise :class:`ProofError`.

    ``tsa_roots`` (PEM): the bundle's checkpoint must also carry an RFC 3161 timestamp from a TSA with those roots."""
    if not isinstance(bundle, dict):
        raise ProofError("the bundle is not a JSON object")
    known = [verify_checkpoint(note, public_key) for note in known_checkpoints]
    kind = bundle.get("format")
    if kind == CONSISTENCY_FORMAT:
        old = verify_checkpoint(_text(bundle, "old_checkpoint"), public_key)
        new = verify_checkpoint(_text(bundle, "checkpoint"), public_key)
        _same_log(old, new)
        verify_consistency(old.size, new.size, _hashes(bundle, "consistency_path"), old.root, new.root)
        check_known(new, known)
        return f"OK: the log {new.origin!r} of {new.size} entries extends its checkpoint of {old.size} entries"
    if kind != BUNDLE_FORMAT:
        raise ProofError(f"not a proof bundle (format {kind!r}, expected {BUNDLE_FORMAT!r} or {CONSISTENCY_FORMAT!r})")
    event = _text(bundle, "event")
    index = _integer(bundle, "leaf_index")
    sealed = verify_checkpoint(_text(bundle, "checkpoint"), public_key)
    verify_inclusion(index, sealed.size, leaf_hash(event.encode("utf-8")), _hashes(bundle, "inclusion_path"), sealed.root)
    latest = verify_checkpoint(_text(bundle, "latest_checkpoint"), public_key)
    _same_log(sealed, latest)
    verify_consistency(sealed.size, latest.size, _hashes(bundle, "consistency_path"), sealed.root, latest.root)
    check_known(latest, known)
    try:
        event_id = json.loads(event).get("id")
    except (ValueError, AttributeError):
        event_id = None
    stamped = ""
    if tsa_roots is not None:
        stamped = f", timestamped {check_timestamp(bundle, 'checkpoint', sealed.note, tsa_roots)}"
    elif "checkpoint_timestamp" in bundle:
        stamped = ", timestamp not checked (give --tsa-ca)"
    return f"OK: event {event_id} is entry {index} of the log {sealed.origin!r} (sealed at {sealed.size} entries{stamped}, newest checkpoint {latest.size})"


def verify_file(bundle_path: Path, key_path: Path, known_paths: tuple[Path, ...] = (), tsa_ca: Path | None = None) -> str:
    """:func:`verify_bundle` on files; unreadable files are a :class:`ProofError` too."""
    try:
        raw = bundle_path.read_bytes()
        key = key_path.read_bytes()
        known = tuple(p.read_text(encoding="utf-8") for p in known_paths)
        roots = tsa_ca.read_bytes() if tsa_ca is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProofError(f"cannot read {getattr(exc, 'filename', None) or 'a file'}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    try:
        bundle = json.loads(raw)
    except ValueError:
        raise ProofError(f"{bundle_path} is not JSON") from None
    return verify_bundle(bundle, load_public_key(key), known, roots)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--public-key", required=True, type=Path, help="the log's Ed25519 public key (PEM or name+hash+base64)")
    parser.add_argument("--known-checkpoint", action="append", default=[], type=Path, help="a checkpoint you hold from before")
    parser.add_argument("--tsa-ca", type=Path, default=None, help="the TSA's root certificates (PEM): the checkpoint's RFC 3161 timestamp must verify")
    args = parser.parse_args(argv)
    try:
        print(verify_file(args.bundle, args.public_key, tuple(args.known_checkpoint), args.tsa_ca))
    except ProofError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
