"""The ``integrity:`` section of the YAML: whether manifests are written and how they are signed.

Keys are secrets: give them as files (``private_key_file``, ``hmac_key_file``) or as
``${ENV_VAR}`` references (``private_key``, ``hmac_key``), never inline in the YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from audit_pipeline.settings import Settings, parse_section

SECTION = "integrity"


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
    #: The manifest records the chain hash after every this many events, so verify can narrow down a bad row.
    checkpoint_rows: int = Field(default=10_000, ge=100, le=10_000_000)


def integrity_settings(settings: Settings) -> IntegritySettings:
    return parse_section(IntegritySettings, settings.integrity, SECTION)
