"""Settings from the environment and the YAML file, validated once, with errors that name the key.

Precedence: ``AUDIT_*`` environment variables, then the YAML file (``AUDIT_CONFIG``,
default ``./audit_pipeline.yaml``), then defaults.  Any YAML value may be ``${ENV_VAR}``;
secrets should only be given that way, and are held as :class:`pydantic.SecretStr` so
that they never appear in a repr, a log line or Dagster metadata.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from audit_pipeline.errors import ConfigError

DEFAULT_CONFIG_PATH = "audit_pipeline.yaml"
DEFAULT_EXPORT_URL = "audit-exports"
DEFAULT_PARTITION_START = "2024-01-01"
DEFAULT_STATE_DIR = ".audit_pipeline"

_M = TypeVar("_M", bound=BaseModel)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSettings(_Section):
    type: Literal["postgres", "demo", "hellojohn_api"] = "postgres"
    #: SQLAlchemy URL. Unset means the embedded demo database.
    database_url: SecretStr | None = None
    table: str = "audit_logs"
    #: Rows per batch read from the source; bounds memory.
    batch_rows: int = Field(default=16_384, ge=1_000, le=1_000_000)
    base_url: str | None = None
    secret_key: SecretStr | None = None

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", value):
            raise ValueError("must be a plain table name such as audit_logs or schema.audit_logs")
        return value


class ExportFilterSettings(_Section):
    """Glob patterns (``*``, ``?``) selecting the events of the daily exports; empty selects all."""

    include_types: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    include_tenants: tuple[str, ...] = ()
    exclude_tenants: tuple[str, ...] = ()

    @field_validator("include_types", "exclude_types", "include_tenants", "exclude_tenants")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from audit_pipeline.event_filters import check_pattern

        return tuple(check_pattern(p) for p in value)


class ExportSettings(_Section):
    #: Local path, file://... or s3://bucket/prefix.
    url: str = DEFAULT_EXPORT_URL
    partition_start: dt.date = dt.date.fromisoformat(DEFAULT_PARTITION_START)
    gzip: bool = False
    #: Neutralise CSV cells starting with = + - @ tab CR (OWASP CSV injection advice).
    csv_formula_protection: bool = True
    #: Rows per Parquet row group; 122,880 like DuckDB: big enough for scans, bounded for writing memory.
    parquet_row_group_rows: int = Field(default=122_880, ge=1_000)
    s3_endpoint_url: str | None = None
    s3_sse: Literal["AES256", "aws:kms", "none"] = "AES256"
    s3_kms_key_id: str | None = None
    #: Optional event filter for the daily exports (recorded in the asset metadata).
    filter: ExportFilterSettings = ExportFilterSettings()


class Settings(_Section):
    source: SourceSettings = SourceSettings()
    export: ExportSettings = ExportSettings()
    #: Where durable pipeline state (sink positions) lives; a SQLAlchemy URL.
    state_url: str | None = None
    forwarding: dict[str, Any] = Field(default_factory=dict)
    sinks: dict[str, Any] = Field(default_factory=dict)
    retention: dict[str, Any] = Field(default_factory=dict)
    integrity: dict[str, Any] = Field(default_factory=dict)

    @property
    def uses_demo_source(self) -> bool:
        return self.source.type == "demo" or (self.source.type == "postgres" and self.source.database_url is None)

    def resolved_state_url(self) -> str:
        if self.state_url:
            return self.state_url
        Path(DEFAULT_STATE_DIR).mkdir(exist_ok=True)
        return f"sqlite:///{Path(DEFAULT_STATE_DIR).resolve() / 'state.db'}"


_ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "AUDIT_DATABASE_URL": ("source", "database_url"),
    "AUDIT_EXPORT_URL": ("export", "url"),
    "AUDIT_PARTITION_START": ("export", "partition_start"),
    "AUDIT_EXPORT_GZIP": ("export", "gzip"),
    "AUDIT_CSV_FORMULA_PROTECTION": ("export", "csv_formula_protection"),
    "AUDIT_S3_ENDPOINT_URL": ("export", "s3_endpoint_url"),
    "AUDIT_S3_SSE": ("export", "s3_sse"),
    "AUDIT_S3_KMS_KEY_ID": ("export", "s3_kms_key_id"),
}


def _interpolate(value: Any, where: str, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}" if where else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                raise ConfigError(f"configuration key '{where}' refers to ${{{name}}}, but the environment variable {name} is not set")
            return env[name]

        return _ENV_REF.sub(replace, value)
    return value


def _format_validation_error(error: ValidationError, origin: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the README)"
        lines.append(f"  {key}: {message}")
    return f"invalid configuration in {origin}:\n" + "\n".join(lines)


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read, interpolate and validate the configuration; raise :class:`ConfigError` naming the key at fault."""
    env = dict(os.environ) if env is None else env
    explicit = path is not None or "AUDIT_CONFIG" in env
    config_path = Path(path if path is not None else env.get("AUDIT_CONFIG", DEFAULT_CONFIG_PATH))
    raw: dict[str, Any] = {}
    origin = "the environment"
    if config_path.exists():
        origin = str(config_path)
        try:
            loaded = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path} must hold a mapping of sections (source, export, sinks, ...), not {type(loaded).__name__}")
        raw = _interpolate(loaded, "", env)
    elif explicit:
        raise ConfigError(f"configuration file {config_path} (AUDIT_CONFIG) does not exist")
    for variable, (section, key) in _ENV_OVERRIDES.items():
        value = env.get(variable)
        if value not in (None, ""):
            if not isinstance(raw.get(section, {}), dict):
                raise ConfigError(f"configuration key '{section}' in {origin} must be a mapping")
            raw.setdefault(section, {})[key] = value
    if raw.get("source", {}).get("database_url") and "type" not in raw.get("source", {}):
        raw["source"]["type"] = "postgres"
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        hint = " (environment variables " + ", ".join(_ENV_OVERRIDES) + " override the file)"
        raise ConfigError(_format_validation_error(exc, origin) + hint) from None


def parse_section(model: type[_M], raw: Any, where: str) -> _M:
    """Validate one section of the YAML (e.g. ``sinks.elasticsearch``) with errors naming the full key."""
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        lines = []
        for item in exc.errors():
            key = ".".join([where, *(str(p) for p in item["loc"])])
            message = "unknown key (check the spelling against the README)" if item["type"] == "extra_forbidden" else item["msg"]
            lines.append(f"  {key}: {message}")
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
