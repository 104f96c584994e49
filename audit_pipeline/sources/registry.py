"""Which source the settings select: a mapping from ``source.type`` to the function that builds it.

Like :mod:`audit_pipeline.sinks.registry` for sinks.  The interface (:mod:`.base`) knows no concrete
source, so sources import it without a circle; only this module imports them, each when it is built,
so that choosing the demo database never loads the HelloJohn API client and vice versa.
"""

from __future__ import annotations

from collections.abc import Callable

from audit_pipeline.config.settings import Settings
from audit_pipeline.sources.base import AuditSource

SourceBuilder = Callable[[Settings], AuditSource]


def _postgres(settings: Settings) -> AuditSource:
    from audit_pipeline.sources.postgres import PostgresSource

    source = settings.source
    assert source.type == "postgres"  # chosen by source.type
    return PostgresSource(source.database_url.get_secret_value(), table=source.table, batch_rows=source.batch_rows)


def _demo(settings: Settings) -> AuditSource:
    from audit_pipeline.sources.demo import DemoSource

    return DemoSource.default(batch_rows=settings.source.batch_rows)


def _hellojohn_api(settings: Settings) -> AuditSource:
    from audit_pipeline.sources.hellojohn_api import HelloJohnApiSource

    return HelloJohnApiSource.from_settings(settings)


#: ``source.type`` (as resolved by ``Settings.source_kind``) → builder.  Add an entry per source module.
BUILDERS: dict[str, SourceBuilder] = {
    "postgres": _postgres,
    "demo": _demo,
    "hellojohn_api": _hellojohn_api,
}


def open_source(settings: Settings) -> AuditSource:
    """Build the source the settings describe (the demo database when no database is configured)."""
    return BUILDERS[settings.source_kind](settings)
