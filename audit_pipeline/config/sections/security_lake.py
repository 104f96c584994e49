"""``security_lake:``: the opt-in daily OCSF export for Amazon Security Lake custom sources.

Security Lake takes one OCSF class per custom source, each under
``ext/{source_name}/region={region}/accountId={account_id}/eventDay={YYYYMMDD}/``; a source name
becomes part of an IAM role name (``AmazonSecurityLake-Provider-{name}-{region}``), so it is at most
20 characters.  Everything is checked when the file loads, so a wrong name fails there, naming the key,
and not in the middle of a night's run.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from audit_pipeline.config.sections.ocsf import OcsfSettings

#: The OCSF classes the mapping writes (audit_pipeline.schemas.ocsf_table) → their default custom-source names.
DEFAULT_SOURCE_NAMES: dict[int, str] = {
    3001: "hellojohn-account",
    3002: "hellojohn-auth",
    3004: "hellojohn-entity",
    3005: "hellojohn-access",
    3006: "hellojohn-group",
}
#: A custom-source name: at most 20 characters (it is part of an IAM role name) and safe as a path segment.
SOURCE_NAME = re.compile(r"[A-Za-z0-9_-]{1,20}")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_ACCOUNT = re.compile(r"\d{12}")


class SecurityLakeSettings(BaseModel):
    """``security_lake:``: where and how the daily OCSF Parquet objects for Amazon Security Lake are written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Write the daily OCSF export (the ``audit_logs_ocsf_security_lake`` asset); off by default.
    enabled: bool = False
    #: Where the objects go: ``s3://bucket/prefix`` (Security Lake's bucket: no prefix) or a local path; not the export store.
    url: str | None = None
    #: S3-compatible endpoint (tests, MinIO); unset for AWS.
    s3_endpoint_url: str | None = None
    #: Server-side encryption requested per object; ``none`` leaves it to the bucket's default (Security Lake's buckets have one).
    s3_sse: Literal["AES256", "aws:kms", "none"] = "none"
    #: The KMS key (id, ARN or alias) for ``s3_sse: aws:kms``.
    s3_kms_key_id: str | None = None
    #: The AWS Region in the layout (``region=us-east-1``): the Region of the Security Lake the sources belong to.
    region: str | None = None
    #: The 12-digit AWS account in the layout (``accountId=...``): the account that owns the custom sources.
    account_id: str | None = None
    #: OCSF version written (1.1.0: what Security Lake validates custom sources with) and deployment event types.
    ocsf: OcsfSettings = OcsfSettings()
    #: Custom-source name per OCSF class uid (≤20 characters, one distinct name per class); classes not given keep their default.
    source_names: dict[int, str] = Field(default_factory=lambda: dict(DEFAULT_SOURCE_NAMES))
    #: Rows per Parquet row group in each class's object: each class holds at most this many rows in memory (16,384: about 320 MB peak for the run).
    row_group_rows: int = Field(default=16_384, ge=1_000, le=1_048_576)

    @field_validator("source_names")
    @classmethod
    def _names(cls, value: dict[int, str]) -> dict[int, str]:
        for uid, name in value.items():
            if uid not in DEFAULT_SOURCE_NAMES:
                known = ", ".join(str(u) for u in DEFAULT_SOURCE_NAMES)
                raise ValueError(f"{uid} is not an OCSF class the mapping writes; use one of {known}")
            if not SOURCE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} (class {uid}): a custom-source name is 1-20 letters, digits, '-' or '_'")
        merged = {**DEFAULT_SOURCE_NAMES, **value}
        taken: dict[str, int] = {}
        for uid, name in merged.items():
            if name in taken:
                raise ValueError(f"{name!r} names both class {taken[name]} and class {uid}; Security Lake takes one custom source per class")
            taken[name] = uid
        return dict(sorted(merged.items()))

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not _REGION.fullmatch(value):
            raise ValueError("must be an AWS Region such as us-east-1")
        return value

    @field_validator("account_id", mode="before")
    @classmethod
    def _account(cls, value: object) -> object:
        if isinstance(value, int):  # YAML reads 123456789012 as a number
            value = f"{value:012d}"
        if value is not None and not (isinstance(value, str) and _ACCOUNT.fullmatch(value)):
            raise ValueError("must be a 12-digit AWS account id, quoted in YAML, e.g. '123456789012'")
        return value

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> SecurityLakeSettings:
        if self.enabled:
            missing = [name for name in ("url", "region", "account_id") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"enabled needs {', '.join(missing)}: set security_lake.{missing[0]}")
        if self.s3_sse == "aws:kms" and not self.s3_kms_key_id:
            raise ValueError("s3_sse aws:kms needs s3_kms_key_id")
        return self
