"""The ``retention:`` section: how long rows, exports and indices are kept, read once and checked.

```yaml
retention:
  database: 7y                     # rows of audit_logs
  database_url: ${AUDIT_RETENTION_DATABASE_URL}   # a role that may DELETE (the export role only reads)
  exports: {csv: 90d, ndjson: 90d, parquet: unlimited}   # or exports: {plan: pro}, or exports: 90d
  elasticsearch: 30d               # daily indices of sinks.elasticsearch
  legal_hold: false                # true: nothing is deleted anywhere
```

A duration is ``Nd`` (days), ``Nw`` (weeks), ``Ny`` (calendar years) or ``unlimited``.  Ages
are whole UTC days counted from the run's date: with ``7d`` on 2024-05-20 the cutoff is
2024-05-13, which is kept (the boundary day), and 2024-05-12 and earlier are deleted.  A
second run on the same date has the same cutoff, so it deletes nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from audit_pipeline.config.sections.retention import Duration
from audit_pipeline.config.settings import Settings
from audit_pipeline.core.errors import ConfigError

__all__ = ["RetentionPolicy", "retention_policy"]
from audit_pipeline.core.layout import FORMATS

SECTION = "retention"


@dataclass(frozen=True)
class RetentionPolicy:
    """The checked policy: one duration per store, plus where and how to delete rows."""

    database: Duration
    database_url: SecretStr | None
    batch_rows: int
    exports: dict[str, Duration]
    elasticsearch: Duration
    legal_hold: bool

    @property
    def deletes_anything(self) -> bool:
        return not (self.database.unlimited and self.elasticsearch.unlimited and all(d.unlimited for d in self.exports.values()))

    def describe(self) -> str:
        exports = ", ".join(f"{fmt} {self.exports[fmt]}" for fmt in FORMATS)
        return f"database {self.database}; exports {exports}; elasticsearch {self.elasticsearch}" + ("; LEGAL HOLD" if self.legal_hold else "")


def retention_policy(settings: Settings) -> RetentionPolicy:
    """Parse ``retention:`` and refuse contradictions, naming the key at fault."""
    raw = settings.retention
    exports_policy = raw.exports if raw.plan is None else raw.exports.model_copy(update={"plan": raw.plan})
    exports = {fmt: exports_policy.for_format(fmt) for fmt in FORMATS}
    policy = RetentionPolicy(raw.database, raw.database_url, raw.batch_rows, exports, raw.elasticsearch, raw.legal_hold)
    if not policy.database.unlimited:
        _check_database_policy(policy, settings)
    if not policy.elasticsearch.unlimited and settings.sinks.elasticsearch is None:
        raise ConfigError(
            f"retention.elasticsearch is {policy.elasticsearch}, but there is no sinks.elasticsearch section saying which cluster and index pattern; "
            "configure the sink or remove retention.elasticsearch"
        )
    if not policy.elasticsearch.unlimited:
        from audit_pipeline.retention.elasticsearch import IndexPattern, elasticsearch_sink

        sink = elasticsearch_sink(settings)
        sink.close()
        IndexPattern.compile(sink.settings.index, f"{sink.where}.index")
    return policy


def _check_database_policy(policy: RetentionPolicy, settings: Settings) -> None:
    if policy.database_url is None:
        raise ConfigError(
            f"retention.database is {policy.database}, so retention needs a connection that may delete rows: set retention.database_url "
            "(e.g. ${AUDIT_RETENTION_DATABASE_URL}) to a role with SELECT and DELETE on the audit table; the export role only reads"
        )
    if not any(duration.keeps_at_least(policy.database) for duration in policy.exports.values()):
        shown = ", ".join(f"{fmt} {policy.exports[fmt]}" for fmt in FORMATS)
        raise ConfigError(
            f"retention.exports ({shown}) deletes every export format before retention.database ({policy.database}) deletes the rows, "
            "so no exported copy would be left to check a day against and rows could never be deleted safely: keep at least one format "
            f"for {policy.database} or longer (e.g. retention.exports.parquet: unlimited), or shorten retention.database"
        )
    described = settings.export.filter
    if any((described.include_types, described.exclude_types, described.include_tenants, described.exclude_tenants)):
        raise ConfigError(
            "retention.database cannot be used with export.filter: the daily exports leave some events out, and retention only deletes "
            "rows that are in a verified export; remove export.filter or set retention.database: unlimited"
        )
