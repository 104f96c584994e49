"""``integrity:``: whether manifests are written and how they are signed; keys only as files or ``${VAR}``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class IntegritySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Write a manifest (and extend the entry chain) for every exported day.
    enabled: bool = True
    #: ``auto`` signs with whichever key is configured, and leaves manifests unsigned when none is.
    signing: Literal["auto", "ed25519", "hmac-sha256", "none"] = "auto"
    #: PEM (PKCS#8) Ed25519 private key file.
    private_key_file: Path | None = None
    #: PEM text of the Ed25519 private key; give it as ``${VAR}``.
    private_key: SecretStr | None = None
    #: Passphrase of an encrypted PEM key; give it as ``${VAR}``.
    private_key_passphrase: SecretStr | None = None
    #: Shared secret for HMAC-SHA256 manifests; give it as ``${VAR}``.
    hmac_key: SecretStr | None = None
    hmac_key_file: Path | None = None
    #: Ed25519 public keys verification trusts besides the configured key (e.g. keys used before a rotation).
    public_key_files: tuple[Path, ...] = ()
    #: Fail unsigned manifests from the first signed day on.  Default (None): true whenever a key is
    #: configured or the store publishes a public key.  ``false`` is logged as a warning on every run.
    require_signature: bool | None = None
    #: The manifest records the chain hash after every this many events, so verify can narrow down a bad row.
    checkpoint_rows: int = Field(default=10_000, ge=100, le=10_000_000)
    #: Append every sealed day's events to the transparency log (``tlog/`` beside the manifests: a Merkle
    #: tree, a signed checkpoint per day, ``audit-pipeline prove``).  Turning it off stops the log growing;
    #: days exported meanwhile join it when they are exported again with it on.
    transparency_log: bool = True
    #: RFC 3161 time-stamping authority (``http(s)://...``): every checkpoint of the log is sent to it and its
    #: token stored beside it (``.tsr``), so that when a checkpoint existed does not rest on our word.  Off when unset.
    timestamp_url: str | None = None
    #: PEM file of the TSA's root (and intermediate) certificates, which ``verify`` checks the tokens against.
    timestamp_ca_file: Path | None = None

    @field_validator("timestamp_url")
    @classmethod
    def _tsa_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be the http:// or https:// URL of an RFC 3161 time-stamping authority")
        return value or None

    @property
    def has_key(self) -> bool:
        """Any signing or verification key is configured."""
        return any((self.private_key_file, self.private_key, self.hmac_key, self.hmac_key_file, self.public_key_files))

    def signatures_optional_warning(self) -> str | None:
        """The warning every run logs while signatures were turned off on purpose."""
        if self.require_signature is False:
            return (
                "integrity.require_signature is false: unsigned manifests are accepted even after signed ones, so a forgery "
                "re-exported without signing passes verify and lets retention delete the originals; remove the setting to require signatures"
            )
        return None
