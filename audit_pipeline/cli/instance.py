"""The Dagster instance the command line records its runs in, and what its history says about the configured store.

``audit-pipeline export-day`` and ``demo`` record their runs where ``dagster dev`` started in the same folder
looks: ``$DAGSTER_HOME``, else ``./dagster.yaml``'s folder.  That history (which days are Materialized, their
metadata and checks) belongs to the instance, not to the store it describes, so a configuration that points
``export.url`` (or the source) elsewhere under the same instance is named here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from audit_pipeline.config.settings import Settings

if TYPE_CHECKING:
    import dagster as dg


def dagster_instance() -> dg.DagsterInstance:
    """The instance ``dagster dev`` opens here: ``$DAGSTER_HOME``, else ``./dagster.yaml``'s folder, else a throwaway one."""
    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    if Path("dagster.yaml").is_file():
        return dg.DagsterInstance.from_config(str(Path.cwd()))
    return dg.DagsterInstance.ephemeral()


def _store_root(uri: str) -> str | None:
    """The export root of a recorded object URI: ``{root}/csv/date=YYYY-MM-DD/…`` → ``{root}``."""
    root, found, _rest = uri.partition("/csv/date=")
    return root.rstrip("/") if found else None


def recorded_store_note(instance: dg.DagsterInstance, settings: Settings) -> str | None:
    """A note when the instance's latest daily export went to another store (or came from the demo) than configured.

    The UI's history (which days are Materialized, their metadata, the checks) belongs to the Dagster instance,
    not to the store it describes: after pointing ``export.url`` (or the source) elsewhere under the same
    instance, the earlier days still show as exported although the configured store may not hold them.
    """
    import dagster as dg

    from audit_pipeline.defs.exports import EXPORT_ASSETS
    from audit_pipeline.storage.object_store import ObjectStore

    found = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=EXPORT_ASSETS["csv"]), limit=1, ascending=False).records
    materialization = found[0].asset_materialization if found else None
    if materialization is None:
        return None
    uri = materialization.metadata.get("dagster/uri")
    recorded = _store_root(str(uri.value)) if uri is not None else None
    configured = ObjectStore.from_settings(settings.export).uri("").rstrip("/")
    source = materialization.metadata.get("source")
    day = materialization.partition or "a day"
    where = f"the Dagster instance ({_instance_where()})"
    if recorded and recorded != configured:
        return (
            f"{where} last recorded an export ({day}) in {recorded}, but export.url is {configured}: the UI's history "
            "belongs to the instance, so days exported there still show as Materialized; use a DAGSTER_HOME per store"
        )
    if source is not None and str(source.value).startswith("demo database") and not settings.uses_demo_source:
        return (
            f"{where} last recorded an export ({day}) from the embedded demo database, and the source is now {settings.source_kind}: "
            "the UI's history belongs to the instance, so the demo's days still show as Materialized; use a DAGSTER_HOME per source"
        )
    return None


def _instance_where() -> str:
    if os.environ.get("DAGSTER_HOME"):
        return f"$DAGSTER_HOME {os.environ['DAGSTER_HOME']}"
    return str(Path("dagster.yaml").resolve()) if Path("dagster.yaml").is_file() else "a throwaway instance"


def existing_instance_note(settings: Settings) -> str | None:
    """:func:`recorded_store_note` for the instance here, if one has recorded anything (nothing is created)."""
    home = os.environ.get("DAGSTER_HOME")
    if home and not Path(home, "history").is_dir() and not Path(home, "storage").is_dir():
        return None
    if not home and not (Path("dagster.yaml").is_file() and Path(".dagster_home").is_dir()):
        return None
    return recorded_store_note(dagster_instance(), settings)
