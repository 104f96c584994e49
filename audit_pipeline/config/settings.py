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
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from audit_pipeline.config.sections.alerts import AlertSettings
from audit_pipeline.config.sections.forwarding import ForwardingSettings
from audit_pipeline.config.sections.integrity import IntegritySettings
from audit_pipeline.config.sections.retention import RetentionSettings
from audit_pipeline.config.sections.security_lake import SecurityLakeSettings
from audit_pipeline.config.sections.sinks import SinksSettings
from audit_pipeline.config.sections.summary import SummarySettings
from audit_pipeline.config.yaml_file import read_yaml
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.redaction import register_secret

DEFAULT_CONFIG_PATH = "audit_pipeline.yaml"
DEFAULT_EXPORT_URL = "audit-exports"
DEFAULT_PARTITION_START = "2024-01-01"
DEFAULT_STATE_DIR = ".audit_pipeline"

_M = TypeVar("_M", bound=BaseModel)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _table_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?", value):
        raise ValueError("must be a plain table name such as audit_logs or schema.audit_logs")
    return value


#: Rows per batch read from the source; bounds memory.
BatchRows = Annotated[int, Field(default=16_384, ge=1_000, le=1_000_000)]


class PostgresSourceSettings(_Section):
    """``source: {type: postgres}``: HelloJohn's own PostgreSQL database, read with SELECT only."""

    type: Literal["postgres"] = "postgres"
    #: SQLAlchemy/libpq URL of a role that may SELECT the audit table; give it as ``${VAR}`` (or AUDIT_DATABASE_URL).
    database_url: SecretStr
    table: Annotated[str, AfterValidator(_table_name)] = "audit_logs"
    #: Rows per batch read from PostgreSQL: 4,096 reads as fast as larger batches and keeps an export's memory lower.
    batch_rows: BatchRows = 4_096


class HelloJohnApiSourceSettings(_Section):
    """``source: {type: hellojohn_api}``: HelloJohn's audit log API, for hosted installations."""

    type: Literal["hellojohn_api"]
    #: The HelloJohn server, e.g. https://auth.yourdomain.com.
    base_url: str
    #: The server's secret key; give it as ``${HJ_SECRET_KEY}``.
    secret_key: SecretStr
    batch_rows: BatchRows = 16_384
    #: ``export`` streams a range in one request, ``list`` pages through 200 events a request.
    api_read: Literal["export", "list"] = "export"
    #: An export response of exactly this many events is resumed (0: no cap).
    export_row_cap: int = Field(default=100_000, ge=0)
    #: The audit table only exists behind the API; retention of database rows does not apply.
    table: ClassVar[str] = "audit_logs"


class DemoSourceSettings(_Section):
    """``source: {type: demo}``: the embedded demo database (SQLite, synthetic events); used when nothing is configured."""

    type: Literal["demo"] = "demo"
    batch_rows: BatchRows = 16_384
    table: ClassVar[str] = "audit_logs"


#: ``source:``, chosen by its ``type``.
SourceSettings = Annotated[PostgresSourceSettings | HelloJohnApiSourceSettings | DemoSourceSettings, Field(discriminator="type")]
SOURCE_TYPES = ("postgres", "hellojohn_api", "demo")


class ExportFilterSettings(_Section):
    """Glob patterns (``*``, ``?``) selecting the events of the daily exports; empty selects all."""

    include_types: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    include_tenants: tuple[str, ...] = ()
    exclude_tenants: tuple[str, ...] = ()

    @field_validator("include_types", "exclude_types", "include_tenants", "exclude_tenants")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from audit_pipeline.core.event_filters import check_pattern

        return tuple(check_pattern(p) for p in value)


class ExportSettings(_Section):
    #: Local path, file://... or s3://bucket/prefix.
    url: str = DEFAULT_EXPORT_URL
    partition_start: dt.date = dt.date.fromisoformat(DEFAULT_PARTITION_START)
    gzip: bool = False
    #: Neutralise CSV cells starting with = + - @ tab CR (OWASP CSV injection advice).
    csv_formula_protection: bool = True
    #: Rows per Parquet row group: 16,384 (about 1 MB compressed) keeps an export's memory low; 32,768 costs about 20 MB more, 122,880 (DuckDB's) about 120 MB.
    parquet_row_group_rows: int = Field(default=16_384, ge=1_000)
    s3_endpoint_url: str | None = None
    s3_sse: Literal["AES256", "aws:kms", "none"] = "AES256"
    s3_kms_key_id: str | None = None
    #: Optional event filter for the daily exports (recorded in the asset metadata).
    filter: ExportFilterSettings = ExportFilterSettings()
    #: UTC time of day (HH:MM) by which the day that just ended should be sealed; later, the UI shows the exports stale.
    sealed_by: str = "03:00"

    @field_validator("sealed_by")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value)
        if not match or value == "00:00":
            raise ValueError("must be a UTC time of day after midnight, HH:MM, e.g. 03:00")
        return value

    @property
    def sealed_by_minutes(self) -> int:
        """Minutes after midnight UTC by which yesterday should be sealed."""
        hours, minutes = self.sealed_by.split(":")
        return int(hours) * 60 + int(minutes)


class Settings(_Section):
    """The whole configuration file, every section typed and checked when it loads."""

    source: SourceSettings = Field(default_factory=DemoSourceSettings)
    export: ExportSettings = ExportSettings()
    #: Where durable pipeline state (sink positions, leases, day locks) lives; a SQLAlchemy URL. Default: SQLite under .audit_pipeline/.
    state_url: str | None = None
    forwarding: ForwardingSettings = ForwardingSettings()
    sinks: SinksSettings = SinksSettings()
    retention: RetentionSettings = RetentionSettings()
    integrity: IntegritySettings = IntegritySettings()
    summary: SummarySettings = SummarySettings()
    alerts: AlertSettings = AlertSettings()
    security_lake: SecurityLakeSettings = SecurityLakeSettings()

    @field_validator("state_url")
    @classmethod
    def _state_url_is_a_database_url(cls, value: str | None) -> str | None:
        """Checked when the file loads, not when the first sensor opens it (the value is not echoed: it may hold a password)."""
        if value is None:
            return None
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(value).get_dialect()
        except (ArgumentError, NoSuchModuleError, ValueError):
            raise ValueError("must be a SQLAlchemy database URL, such as sqlite:////var/lib/audit/state.db or postgresql://user@host/db") from None
        return value

    @property
    def uses_demo_source(self) -> bool:
        return isinstance(self.source, DemoSourceSettings)

    @property
    def source_kind(self) -> Literal["postgres", "demo", "hellojohn_api"]:
        """The source actually read: ``demo`` when nothing is configured."""
        return self.source.type

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
    "AUDIT_STATE_URL": ("", "state_url"),  # "" : a key at the top of the file
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
            register_secret(env[name])  # a ${VAR} value is masked wherever it later appears
            return env[name]

        return _ENV_REF.sub(replace, value)
    return value


#: Parts of a pydantic error location that name a type tried in a union, not a key.
_TYPE_PART = re.compile(r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|tuple\[.*\]|SecretStr|date|datetime|function-.*|literal\[.*\]|[A-Z][A-Za-z]+)$")


def _key_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif (i == 1 and loc[0] == "source" and part in SOURCE_TYPES) or _TYPE_PART.match(str(part)):
            continue  # the union member pydantic tried: not a key the user wrote
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _problem(item: Any, key: str) -> str:
    """One pydantic error in words a user acts on, never echoing the value of a secret."""
    kind = item["type"]
    if kind == "extra_forbidden":
        if key.startswith("sinks.") and key.count(".") == 1:
            return "unknown sink; sinks may be elasticsearch, datadog, splunk or webhooks"
        return "unknown key (check the spelling; `audit-pipeline config schema` lists every key)"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"type must be one of {', '.join(SOURCE_TYPES)}"
    if kind.startswith(("date_", "datetime_")):
        return f"must be a day as YYYY-MM-DD, got {str(item.get('input'))[:40]!r}"
    if kind == "missing":
        if key == "source.database_url":
            return "is required for source type postgres: set it (as ${AUDIT_DATABASE_URL}) or the AUDIT_DATABASE_URL variable"
        return "is required"
    message = str(item["msg"])
    return message[len("Value error, ") :] if message.startswith("Value error, ") else message


def validation_problems(error: ValidationError, origin: str | None, from_env: dict[tuple[str, str], str] | None = None, prefix: str = "") -> list[str]:
    """One line per problem, ``<file>: <key>: <what is wrong>``; an ``AUDIT_*`` variable is named instead of the file."""
    lines: list[str] = []
    seen: set[str] = set()
    for item in error.errors():
        loc = tuple(item["loc"])
        key = _key_path(loc)
        key = f"{prefix}.{key}" if prefix and key != "(top level)" else prefix or key
        if key in seen:
            continue  # one line per key: a union reports each member it tried
        seen.add(key)
        # An override is keyed (section, key), a top-level key's section being "" (loc[0] is then the key).
        variable = (from_env or {}).get((str(loc[0]) if len(loc) > 1 else "", str(loc[-1]))) if loc else None
        where = f"{variable} ({key})" if variable else f"{origin}: {key}" if origin else key
        lines.append(f"{where}: {_problem(item, key)}")
    return lines


def _apply_environment(raw: dict[str, Any], env: dict[str, str], origin: str) -> dict[tuple[str, str], str]:
    """Put the ``AUDIT_*`` overrides into ``raw``; returns which key each variable set."""
    from_env: dict[tuple[str, str], str] = {}
    source = raw.get("source")
    if source is not None and not isinstance(source, dict):
        raise ConfigError(f"{origin}: source: must be a mapping with a type ({', '.join(SOURCE_TYPES)})")
    for variable, (section, key) in _ENV_OVERRIDES.items():
        value = env.get(variable)
        if value in (None, ""):
            continue
        if section == "source" and (source or {}).get("type", "postgres") != "postgres":
            continue  # AUDIT_DATABASE_URL only concerns a PostgreSQL source
        if not section:
            raw[key] = value
            from_env[(section, key)] = variable
            continue
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"{origin}: {section}: must be a mapping")
        raw.setdefault(section, {})[key] = value
        from_env[(section, key)] = variable
    if isinstance(raw.get("source"), dict):
        raw["source"].setdefault("type", "postgres")  # a source section without a type is PostgreSQL; none at all is the demo
    return from_env


def load_settings(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None, overrides: bool = True) -> Settings:
    """Read, interpolate and validate the configuration; raise :class:`ConfigError` naming every key at fault, one per line.

    ``overrides=False``: the ``AUDIT_*`` variables do not override the file (one of several deployments in a process)."""
    env = dict(os.environ) if env is None else env
    explicit = path is not None or "AUDIT_CONFIG" in env
    config_path = Path(path if path is not None else env.get("AUDIT_CONFIG", DEFAULT_CONFIG_PATH))
    loaded: Any = {}
    origin = "the environment"
    if config_path.exists():
        origin = str(config_path)
        loaded = read_yaml(config_path)
    elif explicit:
        raise ConfigError(f"configuration file {config_path} (AUDIT_CONFIG) does not exist")
    return settings_from_mapping(loaded, origin, env, overrides)


def settings_from_mapping(loaded: Any, origin: str, env: dict[str, str] | None = None, overrides: bool = True) -> Settings:
    """Interpolate and validate one mapping of sections, as read from ``audit_pipeline.yaml`` or a component's ``defs.yaml``.

    The ``AUDIT_*`` variables override it the same way wherever it came from, so one deployment reads alike
    from the command line and from a Dagster project that embeds it; ``overrides=False`` leaves them out (a
    component with a ``key_prefix``: two deployments in one process must not both take ``AUDIT_EXPORT_URL``).
    ``${VAR}`` references are resolved either way.
    """
    env = dict(os.environ) if env is None else env
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{origin} must hold a mapping of sections (source, export, sinks, ...), not {type(loaded).__name__}")
    raw: dict[str, Any] = _interpolate(loaded, "", env)
    from_env = _apply_environment(raw, env, origin) if overrides else {}
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("\n".join(validation_problems(exc, origin, from_env))) from None
    register_model_secrets(settings)
    register_secret(settings.state_url)  # a URL: only its password is registered
    return settings


def register_model_secrets(value: Any) -> None:
    """Register every :class:`SecretStr` inside a loaded model (or list/dict of them) for redaction."""
    if isinstance(value, SecretStr):
        register_secret(value)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            register_model_secrets(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            register_model_secrets(item)
    elif isinstance(value, list | tuple):
        for item in value:
            register_model_secrets(item)


def parse_section(model: type[_M], raw: Any, where: str) -> _M:
    """Validate one section of the YAML (e.g. ``sinks.elasticsearch``) with errors naming the full key."""
    try:
        parsed = model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise ConfigError("\n".join(validation_problems(exc, None, prefix=where))) from None
    register_model_secrets(parsed)
    return parsed
