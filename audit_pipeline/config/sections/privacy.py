"""A sink's ``privacy:`` section: fields dropped, hashed or masked, metadata keys allowed (applied in
:mod:`audit_pipeline.sinks.privacy`), checked when the configuration loads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from audit_pipeline.core.schema import COLUMNS

#: Fields no privacy rule may touch (see the module docstring).
FIXED_FIELDS = frozenset({"id", "type", "result", "created_at"})
#: Fields that may be dropped or hashed.
PROTECTABLE = tuple(c for c in COLUMNS if c not in FIXED_FIELDS)
#: Shorter HMAC keys are refused: a guessable key makes tokens reversible by trying e-mails.
MIN_KEY_BYTES = 16
DEFAULT_IPV4_PREFIX = 24
DEFAULT_IPV6_PREFIX = 48


class IpPrefixes(BaseModel):
    """Network prefix lengths kept of IPv4 and IPv6 addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ipv4: int = Field(default=DEFAULT_IPV4_PREFIX, ge=0, le=32)
    ipv6: int = Field(default=DEFAULT_IPV6_PREFIX, ge=0, le=128)


class MaskSettings(BaseModel):
    """Partial values: what is kept of an e-mail and of an IP address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor_email: Literal["domain"] | None = None
    ip_address: IpPrefixes | None = None

    @field_validator("ip_address", mode="before")
    @classmethod
    def _prefix(cls, value: Any) -> Any:
        # One number: up to 32 is the IPv4 prefix, above it the IPv6 prefix; the other keeps its default.
        if isinstance(value, bool):
            raise ValueError("give a prefix length such as 24 (IPv4) or 48 (IPv6), or {ipv4: 24, ipv6: 48}")
        if isinstance(value, int):
            if 0 <= value <= 32:
                return {"ipv4": value}
            if 32 < value <= 128:
                return {"ipv6": value}
            raise ValueError(f"prefix length {value} is neither an IPv4 (0-32) nor an IPv6 (0-128) prefix")
        return value


class PrivacySettings(BaseModel):
    """A sink's ``privacy:`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    drop: tuple[str, ...] = ()
    hash: tuple[str, ...] = ()
    mask: MaskSettings = MaskSettings()
    #: ``metadata`` keys the sink may receive (``nested.email`` for an entry of a nested object); unset sends metadata whole.
    metadata_keys: tuple[str, ...] | None = None
    #: HMAC-SHA256 key for ``hash``; give it as ``${AUDIT_PRIVACY_HASH_KEY}`` (from the environment).
    hash_key: SecretStr | None = Field(default=None, validate_default=True)

    @field_validator("drop", "hash")
    @classmethod
    def _fields(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        for name in value:
            if name in FIXED_FIELDS:
                raise ValueError(f"{name} cannot be changed (positions, delivery and filters rely on it); protectable fields: {', '.join(PROTECTABLE)}")
            if name not in COLUMNS:
                raise ValueError(f"{name!r} is not an audit field; protectable fields: {', '.join(PROTECTABLE)}")
        if len(set(value)) != len(value):
            raise ValueError("a field is listed twice")
        if info.field_name == "hash":
            if "metadata" in value:
                raise ValueError("metadata cannot be hashed (it is a JSON object); drop it, or keep some keys with metadata_keys")
            _one_treatment(set(value), set(info.data.get("drop", ())), "hash", "drop")
        return value

    @field_validator("mask")
    @classmethod
    def _masked_once(cls, value: MaskSettings, info: ValidationInfo) -> MaskSettings:
        masked = {name for name in ("actor_email", "ip_address") if getattr(value, name) is not None}
        _one_treatment(masked, set(info.data.get("drop", ())), "mask", "drop")
        _one_treatment(masked, set(info.data.get("hash", ())), "mask", "hash")
        return value

    @field_validator("metadata_keys")
    @classmethod
    def _metadata_kept(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        if value is not None and "metadata" in info.data.get("drop", ()):
            raise ValueError("metadata is dropped, so metadata_keys has nothing to keep; remove one of them")
        for path in value or ():
            if "" in path.split("."):
                raise ValueError(f"{path!r} has an empty part: give a key, or a dotted path into nested objects such as nested.email")
            for other in value or ():
                if other.startswith(path + "."):
                    raise ValueError(f"{path} already keeps all of {other}; list one of them")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a key is listed twice")
        return value

    @field_validator("hash_key", mode="after")
    @classmethod
    def _key(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            if info.data.get("hash"):
                raise ValueError("hash needs a key: set hash_key to ${AUDIT_PRIVACY_HASH_KEY} and put the key in that environment variable")
            return None
        if len(value.get_secret_value().encode()) < MIN_KEY_BYTES:
            raise ValueError(f"must be at least {MIN_KEY_BYTES} bytes (e.g. `openssl rand -hex 32`)")
        return value

    @property
    def is_empty(self) -> bool:
        return not (self.drop or self.hash or self.metadata_keys is not None or self.mask.actor_email or self.mask.ip_address)


def _one_treatment(fields: set[str], others: set[str], this: str, other: str) -> None:
    both = sorted(fields & others)
    if both:
        raise ValueError(f"{', '.join(both)} is both in {other} and in {this}; choose one treatment per field")
