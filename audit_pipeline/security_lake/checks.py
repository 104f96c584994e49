"""The checks of a day's Security Lake export, from the Parquet footers alone (no rows are read).

* ``rows_add_up``: the row counts of the day's class objects, each read from its own footer, add up to
  the row count the day's Parquet export states in its footer (and to the manifest's).
* ``one_class_per_object``: under each custom source's day folder there is at most one object; its footer's
  ``class_uid`` statistics are that source's class and nothing else; its columns are the class's fixed
  schema; and it is byte for byte what the manifest lists (size and SHA-256 from the store).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from audit_pipeline.config.sections.security_lake import SecurityLakeSettings
from audit_pipeline.security_lake.columns import class_schema
from audit_pipeline.security_lake.export import LakeManifest, SecurityLakeError, day_folder, export_parquet_key, footer_rows, lake_manifest_key
from audit_pipeline.storage.object_store import ObjectStore

CHECK_NAMES = ("rows_add_up", "one_class_per_object")


@dataclass
class Verdict:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _footer(store: ObjectStore, key: str) -> pq.FileMetaData:
    try:
        with store.open(key) as handle:
            return pq.read_metadata(handle)
    except (pa.ArrowException, OSError) as exc:
        raise SecurityLakeError(f"{store.uri(key)} has no readable Parquet footer ({exc})") from None


def _class_range(footer: pq.FileMetaData) -> tuple[int | None, int | None]:
    """Min and max of ``class_uid`` over the row groups, from the footer's statistics."""
    low: int | None = None
    high: int | None = None
    for group in range(footer.num_row_groups):
        row_group = footer.row_group(group)
        for column in range(row_group.num_columns):
            chunk = row_group.column(column)
            if chunk.path_in_schema == "class_uid":
                stats = chunk.statistics
                if stats is None or not stats.has_min_max:
                    return None, None
                low = stats.min if low is None else min(low, stats.min)
                high = stats.max if high is None else max(high, stats.max)
    return low, high


def check_lake_day(settings: SecurityLakeSettings, source: ObjectStore, lake: ObjectStore, day: dt.date) -> dict[str, Verdict]:
    """Both verdicts for ``day``."""
    if settings.region is None or settings.account_id is None:
        raise SecurityLakeError("security_lake.region and security_lake.account_id must be set")
    raw = lake.read_bytes(lake_manifest_key(day)) if lake.exists(lake_manifest_key(day)) else None
    manifest = LakeManifest.from_bytes(raw) if raw is not None else None
    export_rows = footer_rows(source, export_parquet_key(day))
    found: dict[int, list[str]] = {
        uid: [k for k in lake.list(day_folder(name, settings.region, settings.account_id, day)) if k.endswith(".parquet")]
        for uid, name in settings.source_names.items()
    }
    per_class: dict[str, int] = {}
    problems: list[str] = []
    listed = {o.key: o for o in manifest.objects} if manifest else {}
    version = manifest.ocsf_version if manifest else settings.ocsf.version
    for uid, keys in found.items():
        if len(keys) > 1:
            problems.append(f"class {uid}: {len(keys)} objects in one day folder ({', '.join(keys)})")
        for key in keys:
            footer = _footer(lake, key)
            per_class[str(uid)] = per_class.get(str(uid), 0) + footer.num_rows
            low, high = _class_range(footer)
            if (low, high) != (uid, uid):
                problems.append(f"{key}: class_uid ranges {low}..{high}, not only {uid}")
            if not footer.schema.to_arrow_schema().equals(class_schema(uid, version)):
                problems.append(f"{key}: its columns are not class {uid}'s schema in OCSF {version}")
            entry = listed.get(key)
            digest = lake.digest(key)
            if entry is None:
                problems.append(f"{key}: not in the manifest")
            elif (entry.bytes, entry.sha256, entry.rows) != (digest.size, digest.sha256, footer.num_rows):
                problems.append(f"{key}: differs from the manifest (size, SHA-256 or rows)")
    missing = sorted(set(listed) - {k for keys in found.values() for k in keys})
    problems += [f"{key}: in the manifest but not in the store" for key in missing]
    if manifest is None:
        problems.append(f"no manifest at {lake.uri(lake_manifest_key(day))}")
    total = sum(per_class.values())
    adds_up = total == export_rows and (manifest is None or manifest.rows == export_rows)
    rows_text = " + ".join(f"{n} ({uid})" for uid, n in sorted(per_class.items())) or "0"
    return {
        "rows_add_up": Verdict(
            adds_up,
            f"{rows_text} = {total} OCSF rows; the day's Parquet export states {export_rows}"
            + ("" if manifest is None or manifest.rows == export_rows else f"; the manifest says {manifest.rows}"),
            {"rows_per_class": per_class, "ocsf_rows": total, "export_rows": export_rows},
        ),
        "one_class_per_object": Verdict(
            not problems,
            "; ".join(problems[:5]) if problems else f"{sum(len(k) for k in found.values())} objects, one class each, as the manifest lists them",
            {"problems": problems[:20]},
        ),
    }
