"""Signing manifests: Ed25519 (public verification) or HMAC-SHA256 (shared secret), or none.

Ed25519 lets anyone holding the public key check a manifest without being able to forge
one; HMAC needs the secret to check, so it proves integrity only to those who hold it.
Key ids are short fingerprints, never the key: Ed25519 ``sha256(raw public key)[:16]``,
HMAC ``hmac(key, "audit_pipeline key id")[:16]``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.layout import HEAD_KEY, MANIFEST_PREFIX, PUBLIC_KEY_KEY, PUBLIC_KEYS_PREFIX, day_of_manifest_key, manifest_key, public_key_key
from audit_pipeline.integrity.manifest import Head, Manifest, ManifestError, SignedDocument, read_optional
from audit_pipeline.integrity.signer import Signer
from audit_pipeline.storage.object_store import ObjectStore

if TYPE_CHECKING:
    from audit_pipeline.integrity.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_HMAC_KEY_ID_LABEL = b"audit_pipeline key id"
MIN_HMAC_KEY_BYTES = 32


def hmac_key_id(key: bytes) -> str:
    return hmac.new(key, _HMAC_KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


class HmacSigner(Signer):
    algorithm = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.key_id = hmac_key_id(key)

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def matches(self, payload: bytes, value: bytes) -> bool:
        return hmac.compare_digest(self._sign(payload), value)


def _read_secret_file(path: Path, setting: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path} ({exc.strerror or type(exc).__name__}); point it at a readable key file") from None


def _ed25519_private_key(config: IntegritySettings) -> Ed25519PrivateKey | None:
    if config.private_key_file is not None and config.private_key is not None:
        raise ConfigError("integrity.private_key_file and integrity.private_key are both set; keep one")
    if config.private_key_file is not None:
        data, setting = _read_secret_file(config.private_key_file, "integrity.private_key_file"), "integrity.private_key_file"
    elif config.private_key is not None:
        data, setting = config.private_key.get_secret_value().encode("utf-8"), "integrity.private_key"
    else:
        return None
    password = config.private_key_passphrase.get_secret_value().encode("utf-8") if config.private_key_passphrase else None
    from audit_pipeline.integrity.ed25519 import load_private_key  # cryptography only where a key is configured

    return load_private_key(data, password, setting)


def _hmac_key(config: IntegritySettings) -> bytes | None:
    if config.hmac_key_file is not None and config.hmac_key is not None:
        raise ConfigError("integrity.hmac_key_file and integrity.hmac_key are both set; keep one")
    if config.hmac_key_file is not None:
        key, setting = _read_secret_file(config.hmac_key_file, "integrity.hmac_key_file").strip(), "integrity.hmac_key_file"
    elif config.hmac_key is not None:
        key, setting = config.hmac_key.get_secret_value().encode("utf-8"), "integrity.hmac_key"
    else:
        return None
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise ConfigError(f"{setting}: the HMAC key has {len(key)} bytes; use at least {MIN_HMAC_KEY_BYTES} random bytes (e.g. `openssl rand -hex 32`)")
    return key


def load_signer(config: IntegritySettings) -> Signer | None:
    """The signer the settings ask for; None means unsigned manifests."""
    private_key = _ed25519_private_key(config)
    hmac_key = _hmac_key(config)
    mode = config.signing
    if mode == "none":
        return None
    if mode == "auto":
        if private_key is not None and hmac_key is not None:
            raise ConfigError("integrity: both an Ed25519 key and an HMAC key are configured; set integrity.signing to ed25519 or hmac-sha256")
        mode = "ed25519" if private_key is not None else "hmac-sha256" if hmac_key is not None else "none"
    if mode == "ed25519":
        if private_key is None:
            raise ConfigError("integrity.signing is ed25519, but no key is configured: set integrity.private_key_file or integrity.private_key (${VAR})")
        from audit_pipeline.integrity.ed25519 import Ed25519Signer

        return Ed25519Signer(private_key)
    if mode == "hmac-sha256":
        if hmac_key is None:
            raise ConfigError("integrity.signing is hmac-sha256, but no key is configured: set integrity.hmac_key (${VAR}) or integrity.hmac_key_file")
        return HmacSigner(hmac_key)
    return None


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    message: str


@dataclass
class Keyring:
    """The keys a verifier trusts, and from which day on a manifest must be signed.

    ``pinned`` Ed25519 keys (from ``--public-key`` files, ``integrity.public_key_files`` or the
    configured private key) and configured HMAC keys are the only ones accepted once any is
    known.  Without any, the key published in the store for the signature's key id is used,
    which shows that manifests are consistent but not who wrote them (whoever can write the
    store can also replace that key).

    Signatures are required from the first signed day on (the signed head's ``signed_from`` or
    the first manifest with a valid signature, whichever is earlier) as soon as a key is
    configured or the store publishes a public key; with a key but no signed day at all,
    every manifest must be signed.  Otherwise stripping the signatures of the newest days and
    re-exporting forgeries unsigned would pass (a downgrade).
    """

    pinned: dict[str, Ed25519PublicKey] = field(default_factory=dict)
    hmac: dict[str, HmacSigner] = field(default_factory=dict)
    #: Fail unsigned manifests from the first signed day on (everywhere when none is signed).
    require_signature: bool = False
    #: The exporter's view: accept signatures by keys it cannot check (rotated keys), fail only invalid ones.
    lenient: bool = False
    #: Why signatures are required, as the failure says it.
    required_because: str = "--public-key was given"
    #: ``integrity.require_signature: false``: never required, not even when the store publishes a key.
    optional: bool = False
    #: Messages every run shows (signatures turned off on purpose).
    warnings: list[str] = field(default_factory=list)
    _first_signed: dict[str, dt.date | None] = field(default_factory=dict, repr=False)
    _publishes: dict[str, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, config: IntegritySettings | None, public_key_files: Iterable[Path] = ()) -> Keyring:
        keyring = cls()
        for path in public_key_files:
            keyring._pin_file(path, f"--public-key {path}")
            keyring.require_signature = True
        if config is not None:
            for path in config.public_key_files:
                keyring._pin_file(path, f"integrity.public_key_files ({path})")
            private_key = _ed25519_private_key(config)
            if private_key is not None:
                keyring._pin(private_key.public_key())
            hmac_key = _hmac_key(config)
            if hmac_key is not None:
                signer = HmacSigner(hmac_key)
                keyring.hmac[signer.key_id] = signer
            keyring._apply_requirement(config)
        return keyring

    def _pin(self, public_key: Ed25519PublicKey) -> None:
        from audit_pipeline.integrity.ed25519 import ed25519_key_id  # cryptography only where a key is pinned

        self.pinned[ed25519_key_id(public_key)] = public_key

    def _pin_file(self, path: Path, setting: str) -> None:
        from audit_pipeline.integrity.ed25519 import load_public_key

        self._pin(load_public_key(_read_secret_file(path, setting), setting))

    @classmethod
    def for_signer(cls, signer: Signer | None, config: IntegritySettings | None = None) -> Keyring:
        """The exporter's keyring: its own key, and signatures required once it signs."""
        keyring = cls(lenient=True)
        if signer is not None and signer.algorithm == "ed25519":
            keyring.pinned[signer.key_id] = signer.public_key  # type: ignore[attr-defined]
        elif isinstance(signer, HmacSigner):
            keyring.hmac[signer.key_id] = signer
        if signer is not None:
            keyring.require_signature = True
            keyring.required_because = f"this export signs with {signer.algorithm} key {signer.key_id}"
        if config is not None:
            keyring._apply_requirement(config)
        return keyring

    def _apply_requirement(self, config: IntegritySettings) -> None:
        if config.require_signature is False:
            self.require_signature, self.optional = False, True
            warning = config.signatures_optional_warning()
            if warning:
                self.warnings.append(warning)
        elif not self.require_signature and (config.require_signature or config.has_key):
            self.require_signature = True
            self.required_because = "integrity.require_signature is true" if config.require_signature else "a signing key is configured in integrity:"

    # -- when a signature is required ---------------------------------------------------------
    def signature_required(self, store: ObjectStore, day: dt.date | None) -> str | None:
        """Why ``day``'s document must be signed, or None when it may be unsigned."""
        if self.optional:
            return None
        because = self.required_because
        if not self.require_signature:
            where = store.uri("")
            if where not in self._publishes:
                self._publishes[where] = store.exists(PUBLIC_KEY_KEY) or bool(store.list(PUBLIC_KEYS_PREFIX))
            if not self._publishes[where]:
                return None
            because = f"the store publishes a public key ({PUBLIC_KEY_KEY})"
        first = self.first_signed_day(store)
        if first is None:
            return because
        if day is None or day >= first:
            return f"{because}; manifests are signed from {first} on, and an unsigned one after that is a downgrade or a forgery"
        return None

    def first_signed_day(self, store: ObjectStore) -> dt.date | None:
        """The signed head's ``signed_from`` or the first validly signed manifest, whichever is earlier."""
        where = store.uri("")
        if where not in self._first_signed:
            self._first_signed[where] = self._find_first_signed(store)
        return self._first_signed[where]

    def forget(self, store: ObjectStore) -> None:
        """Look the first signed day up again (after this process signed a day)."""
        self._first_signed.pop(store.uri(""), None)
        self._publishes.pop(store.uri(""), None)

    def _find_first_signed(self, store: ObjectStore) -> dt.date | None:
        found: list[dt.date] = []
        raw = read_optional(store, HEAD_KEY)
        if raw is not None:
            try:
                head = Head.from_bytes(raw)
            except ManifestError:
                head = None
            if head is not None and head.signed_from is not None and head.signature is not None and self._check_signature(head, store).ok:
                found.append(head.signed_from)
        days = sorted(d for d in (day_of_manifest_key(k) for k in store.list(MANIFEST_PREFIX)) if d is not None)
        for day in days:
            if found and day >= min(found):
                break
            data = read_optional(store, manifest_key(day))
            try:
                manifest = Manifest.from_bytes(data) if data is not None else None
            except ManifestError:
                continue
            if manifest is not None and manifest.signature is not None and self._check_signature(manifest, store).ok:
                found.append(day)
                break
        return min(found, default=None)

    # -- checking -------------------------------------------------------------------------------
    def check(self, document: SignedDocument, store: ObjectStore) -> SignatureCheck:
        if document.signature is None:
            reason = self.signature_required(store, getattr(document, "day", None))
            if reason is not None:
                return SignatureCheck(False, f"unsigned, but a signature is required ({reason})")
            return SignatureCheck(True, "unsigned")
        return self._check_signature(document, store)

    def _check_signature(self, document: SignedDocument, store: ObjectStore) -> SignatureCheck:
        signature = document.signature
        assert signature is not None
        try:
            value = base64.b64decode(signature.value, validate=True)
        except ValueError:
            return SignatureCheck(False, "signature invalid: not base64")
        payload = document.signing_payload()
        trusted_only = bool(self.pinned or self.hmac) and not self.lenient
        if signature.algorithm == "hmac-sha256":
            signer = self.hmac.get(signature.key_id)
            if signer is None:
                if self.lenient:
                    return SignatureCheck(True, f"HMAC-SHA256 with another key ({signature.key_id}), not checked")
                if self.pinned and not self.hmac:
                    return SignatureCheck(
                        False, f"signed with HMAC key {signature.key_id}, but the trusted keys are Ed25519 ({', '.join(sorted(self.pinned))}): not trusted"
                    )
                return SignatureCheck(False, f"signed with HMAC key {signature.key_id}, which is not the configured integrity.hmac_key; cannot check it")
            if not signer.matches(payload, value):
                return SignatureCheck(False, f"signature invalid (HMAC key {signature.key_id})")
            return SignatureCheck(True, f"HMAC-SHA256, key {signature.key_id}")
        note = ""
        key = self.pinned.get(signature.key_id)
        if key is None and trusted_only:
            trusted = ", ".join(sorted([*self.pinned, *(f"HMAC {k}" for k in self.hmac)]))
            return SignatureCheck(False, f"signed by Ed25519 key {signature.key_id}, which is not a trusted key ({trusted})")
        if key is None:
            published = public_key_key(signature.key_id)
            if not store.exists(published):
                if self.lenient:
                    return SignatureCheck(True, f"Ed25519 with another key ({signature.key_id}), not checked")
                return SignatureCheck(False, f"signed by Ed25519 key {signature.key_id}, but {published} is not in the store; pass --public-key")
            from audit_pipeline.integrity.ed25519 import ed25519_key_id, load_public_key

            key = load_public_key(store.read_bytes(published), published)
            if ed25519_key_id(key) != signature.key_id:
                return SignatureCheck(False, f"{published} holds a different key than its name says")
            note = " (key from the store, not pinned: pass --public-key to prove who signed)"
        from audit_pipeline.integrity.ed25519 import verifies

        if not verifies(key, value, payload):
            return SignatureCheck(False, f"signature invalid (Ed25519 key {signature.key_id})")
        return SignatureCheck(True, f"Ed25519, key {signature.key_id}{note}")


_MOVED = ("Ed25519Signer", "ed25519_key_id", "load_public_key", "public_key_pem")


def __getattr__(name: str) -> Any:
    """The Ed25519 names once defined here, loaded (with ``cryptography``) on first use."""
    if name in _MOVED:
        from audit_pipeline.integrity import ed25519

        return getattr(ed25519, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
