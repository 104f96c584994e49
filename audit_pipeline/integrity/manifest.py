"""Day manifests: what one exported day holds, how it links to the day before, and who signed it.

A manifest is a JSON object at ``manifests/date=YYYY-MM-DD.json``, written after the day's
data objects.  It is serialized deterministically (sorted keys, two-space indent, UTF-8),
so an unchanged re-export reproduces it byte for byte.  The signature covers the canonical
JSON of every member except ``signature`` (keys sorted, no whitespace, UTF-8: RFC 8785 for
the strings and integers a manifest holds).  ``previous.manifest_sha256`` is the SHA-256 of
the previous day's manifest *file*, so ``sha256sum`` checks the link.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

# The keys are the layout's; named here too for the modules that take them from the manifest.
from audit_pipeline.core.layout import (
    HEAD_KEY as HEAD_KEY,
)
from audit_pipeline.core.layout import (
    MANIFEST_PREFIX as MANIFEST_PREFIX,
)
from audit_pipeline.core.layout import (
    PUBLIC_KEY_KEY as PUBLIC_KEY_KEY,
)
from audit_pipeline.core.layout import (
    PUBLIC_KEYS_PREFIX as PUBLIC_KEYS_PREFIX,
)
from audit_pipeline.core.layout import (
    day_of_manifest_key as day_of_manifest_key,
)
from audit_pipeline.core.layout import (
    manifest_key as manifest_key,
)
from audit_pipeline.core.layout import (
    public_key_key as public_key_key,
)
from audit_pipeline.storage.object_store import ObjectStore

MANIFEST_FORMAT: Final = "audit_pipeline.manifest/1"
CHAIN_ALGORITHM: Final = "sha256(previous-hash || ndjson-line-with-newline)"
HEAD_FORMAT: Final = "audit_pipeline.head/1"
CONTENT_TYPE = "application/json"

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_optional(store: ObjectStore, key: str) -> bytes | None:
    """A small object's bytes, or None when it does not exist: one request instead of exists + read."""
    try:
        return bytes(store.fs.cat_file(store.path(key)))
    except FileNotFoundError:
        return None
    except Exception:  # let the store say what is wrong, naming the setting
        return store.read_bytes(key)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pretty_json(value: Any) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class ManifestError(Exception):
    """The bytes are not a manifest this version can read."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventRef(_Model):
    id: str
    created_at: str


class ChainInfo(_Model):
    algorithm: Literal["sha256(previous-hash || ndjson-line-with-newline)"] = CHAIN_ALGORITHM
    #: h_0: the previous day's last hash, or 64 zeros at the start of a chain.
    seed: Hex64
    last_hash: Hex64
    checkpoint_rows: int
    #: Chain head after event checkpoint_rows, 2*checkpoint_rows, ...
    checkpoints: tuple[Hex64, ...]
    #: SHA-256 of the day's canonical lines concatenated (seed-independent).
    events_sha256: Hex64


class PreviousDay(_Model):
    day: dt.date
    manifest_sha256: Hex64


class ObjectEntry(_Model):
    format: Literal["csv", "ndjson", "parquet"]
    key: str
    bytes: int
    sha256: Hex64
    rows: int
    content_type: str
    content_encoding: str | None = None


class CsvInfo(_Model):
    formula_protection: bool
    #: (event, column) cells whose value itself starts with ' and a formula character.
    literal_apostrophe_cells: tuple[tuple[int, str], ...] = ()


class HistoryEntry(_Model):
    action: Literal["linked", "relinked", "re-encoded", "re-signed", "rechained"]
    reason: str
    replaced_manifest_sha256: Hex64
    at: str | None = None
    rows_before: int | None = None
    events_sha256_before: Hex64 | None = None


class Signature(_Model):
    algorithm: Literal["ed25519", "hmac-sha256"]
    key_id: str
    value: str


class SignedDocument(_Model):
    """Anything with a signature over the canonical JSON of its other members."""

    signature: Signature | None = None

    def signing_payload(self) -> bytes:
        return canonical_json(self.model_dump(mode="json", exclude={"signature"}))

    def to_bytes(self) -> bytes:
        return pretty_json(self.model_dump(mode="json"))


class Manifest(SignedDocument):
    format: Literal["audit_pipeline.manifest/1"] = MANIFEST_FORMAT
    day: dt.date
    rows: int
    first: EventRef | None
    last: EventRef | None
    chain: ChainInfo
    #: None when the previous day had no manifest at export time (start of a chain, or exported out of order).
    previous: PreviousDay | None
    objects: tuple[ObjectEntry, ...]
    csv: CsvInfo
    #: The include/exclude filter of a filtered export: the chain then covers only those events.
    event_filter: dict[str, tuple[str, ...]] | None = None
    history: tuple[HistoryEntry, ...] = ()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        return _parse(cls, data)

    def object_for(self, fmt: str) -> ObjectEntry | None:
        return next((o for o in self.objects if o.format == fmt), None)

    def same_content(self, other: Manifest) -> bool:
        """Equal in everything but the signature."""
        return self.signing_payload() == other.signing_payload()


def _parse(model: type[Any], data: bytes) -> Any:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise ManifestError(f"{where}: {first['msg']}") from None


class Head(SignedDocument):
    """The newest sealed day, signed: deleting the newest days or replaying an older head is then visible.

    ``counter`` grows by one with every update, so of two validly signed heads the newer is
    known; ``signed_from`` is the first day whose manifest was signed, after which an
    unsigned manifest is a downgrade.
    """

    format: Literal["audit_pipeline.head/1"] = HEAD_FORMAT
    day: dt.date
    manifest_sha256: Hex64
    counter: int
    signed_from: dt.date | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        return _parse(cls, data)  # type: ignore[no-any-return]


def parse_document(model: type[Any], data: bytes) -> Any:
    """Parse a signed document (manifest or retirement record), raising :class:`ManifestError`."""
    return _parse(model, data)
