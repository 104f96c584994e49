"""Every object key the pipeline writes in the export store, and the parse of each.

The layout is a public contract: analysts prune on ``date=``, auditors read manifests by name, and
retention and verify recognise what is ours from the key alone.  So each key is formatted here and
nowhere else, and the code that meets a key it did not write (a listing) asks this module what it is::

    {fmt}/date=YYYY-MM-DD/audit_logs.{csv,ndjson}[.gz] | audit_logs.parquet    a day's data objects
    manifests/date=YYYY-MM-DD.json                                            a day's manifest
    manifests/head.json                                                       the newest sealed day
    manifests/public_key.pem, manifests/public_keys/<key id>.pem               verification keys
    manifests/retired/date=YYYY-MM-DD.json                                    integrity's retirement record
    retention/date=YYYY-MM-DD.json                                            retention's record of a day
    deadletters/<sink folder>/date=YYYY-MM-DD/<µs>-<digest>[-truncated].ndjson events a sink rejected
    summary/date=YYYY-MM-DD/summary.json                                      the daily security summary

A parser returns None for a key that is not of its kind, including a ``date=`` that is not a calendar
day (``date=2024-02-30`` is somebody else's object, never ours to verify or delete).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import NamedTuple

from audit_pipeline.core.isotime import epoch_micros

#: The data formats, in the order they are written and published.
FORMATS = ("csv", "ndjson", "parquet")
DATA_NAME = "audit_logs"

MANIFEST_PREFIX = "manifests"
HEAD_KEY = f"{MANIFEST_PREFIX}/head.json"
PUBLIC_KEY_KEY = f"{MANIFEST_PREFIX}/public_key.pem"
PUBLIC_KEYS_PREFIX = f"{MANIFEST_PREFIX}/public_keys"
RETIRED_PREFIX = f"{MANIFEST_PREFIX}/retired"
RETENTION_PREFIX = "retention"
DEAD_LETTER_PREFIX = "deadletters"
SUMMARY_PREFIX = "summary"

_DAY = r"(\d{4}-\d{2}-\d{2})"
_DATA_KEY = re.compile(rf"^({'|'.join(FORMATS)})/date={_DAY}/([^/]+)$")
_DATE_FOLDER = re.compile(rf"(?:^|/)date={_DAY}/")
_MANIFEST_KEY = re.compile(rf"^{MANIFEST_PREFIX}/date={_DAY}\.json$")
_RETIREMENT_KEY = re.compile(rf"^{RETIRED_PREFIX}/date={_DAY}\.json$")
_RETENTION_KEY = re.compile(rf"^{RETENTION_PREFIX}/date={_DAY}\.json$")
_SUMMARY_KEY = re.compile(rf"^{SUMMARY_PREFIX}/date={_DAY}/summary\.json$")
_DEAD_LETTER_KEY = re.compile(rf"^{DEAD_LETTER_PREFIX}/([^/]+)/date={_DAY}/(\d+)-([0-9a-f]+)(-truncated)?\.ndjson$")
_UNSAFE_IN_FOLDER = re.compile(r"[^A-Za-z0-9._=-]")


def _calendar_day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


# Data objects ---------------------------------------------------------------------------------------


def data_name(fmt: str, *, gzip: bool = False) -> str:
    """The file name of a format's object: ``audit_logs.csv``, ``audit_logs.ndjson.gz``, ``audit_logs.parquet``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return f"{DATA_NAME}.{fmt}.gz" if gzip and fmt != "parquet" else f"{DATA_NAME}.{fmt}"


def day_prefix(fmt: str, day: dt.date) -> str:
    """The folder of one format's objects for one day, ``csv/date=2024-01-15`` (no trailing slash)."""
    return f"{fmt}/date={day.isoformat()}"


def object_key(fmt: str, day: dt.date, name: str) -> str:
    return f"{day_prefix(fmt, day)}/{name}"


class DataKey(NamedTuple):
    format: str
    day: dt.date
    name: str


def parse_data_key(key: str) -> DataKey | None:
    """``parquet/date=2024-01-15/audit_logs.parquet`` → its format, day and name; None if not a daily data object."""
    match = _DATA_KEY.match(key)
    day = _calendar_day(match.group(2)) if match else None
    return DataKey(match.group(1), day, match.group(3)) if match and day else None


def day_in_data_key(key: str) -> dt.date | None:
    """The day of the first ``date=YYYY-MM-DD/`` folder anywhere in a key (verify counts any object under a
    day's folder as part of that day's exports, nested or not); None without one or for a non-calendar day."""
    match = _DATE_FOLDER.search(key)
    return _calendar_day(match.group(1)) if match else None


# Integrity ------------------------------------------------------------------------------------------


def manifest_key(day: dt.date) -> str:
    return f"{MANIFEST_PREFIX}/date={day.isoformat()}.json"


def day_of_manifest_key(key: str) -> dt.date | None:
    match = _MANIFEST_KEY.match(key)
    return _calendar_day(match.group(1)) if match else None


def public_key_key(key_id: str) -> str:
    return f"{PUBLIC_KEYS_PREFIX}/{key_id}.pem"


def retirement_key(day: dt.date) -> str:
    """Integrity's record of the objects retention deleted from a day."""
    return f"{RETIRED_PREFIX}/date={day.isoformat()}.json"


def day_of_retirement_key(key: str) -> dt.date | None:
    match = _RETIREMENT_KEY.match(key)
    return _calendar_day(match.group(1)) if match else None


# Retention ------------------------------------------------------------------------------------------


def retention_record_key(day: dt.date) -> str:
    """Retention's record that a day's database rows are being, or were, deleted."""
    return f"{RETENTION_PREFIX}/date={day.isoformat()}.json"


def day_of_retention_record_key(key: str) -> dt.date | None:
    match = _RETENTION_KEY.match(key)
    return _calendar_day(match.group(1)) if match else None


# Dead letters ---------------------------------------------------------------------------------------


def sink_folder(sink: str) -> str:
    """A sink name as a folder name (``webhook:SIEM`` → ``webhook_SIEM``)."""
    return _UNSAFE_IN_FOLDER.sub("_", sink)


def dead_letter_prefix(sink: str) -> str:
    """The folder of a sink's dead letters, with its trailing slash."""
    return f"{DEAD_LETTER_PREFIX}/{sink_folder(sink)}/"


def dead_letter_key(sink: str, first_created_at: dt.datetime, digest: str, *, truncated: bool = False) -> str:
    """A dead-letter object: the day and epoch microseconds of its first event, then a digest of its ids,
    so that a batch replayed after a crash rewrites the same object; ``-truncated`` marks events the sink
    took only in part."""
    micros = epoch_micros(first_created_at)
    kind = "-truncated" if truncated else ""
    return f"{dead_letter_prefix(sink)}date={first_created_at.date().isoformat()}/{micros:017d}-{digest}{kind}.ndjson"


class DeadLetterKey(NamedTuple):
    sink_folder: str
    day: dt.date
    first_micros: int
    digest: str
    truncated: bool


def parse_dead_letter_key(key: str) -> DeadLetterKey | None:
    match = _DEAD_LETTER_KEY.match(key)
    day = _calendar_day(match.group(2)) if match else None
    return DeadLetterKey(match.group(1), day, int(match.group(3)), match.group(4), bool(match.group(5))) if match and day else None


# Analysts -------------------------------------------------------------------------------------------


def summary_key(day: dt.date) -> str:
    return f"{SUMMARY_PREFIX}/date={day.isoformat()}/summary.json"


def day_of_summary_key(key: str) -> dt.date | None:
    match = _SUMMARY_KEY.match(key)
    return _calendar_day(match.group(1)) if match else None
