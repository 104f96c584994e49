"""Deterministic re-runs, atomic publish, and failures that name the setting at fault."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.errors import ConfigError, SourceError
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.helpers import read_ndjson_rows, tree

DAY = dt.date(2024, 1, 15)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in tree(root)}


def _export(pg, store, **options):
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        return export_day(source, store, DAY, ExportSettings(**options))


def test_rerun_is_byte_identical_and_batch_size_does_not_matter(pg, tmp_path):
    pg.insert(generate_events(DAY, 5_000))
    first = ObjectStore(str(tmp_path / "a"))
    _export(pg, first)
    snapshot = _snapshot(tmp_path / "a")
    assert sorted(snapshot) == [
        "csv/date=2024-01-15/audit_logs.csv",
        "ndjson/date=2024-01-15/audit_logs.ndjson",
        "parquet/date=2024-01-15/audit_logs.parquet",
    ]
    _export(pg, first)
    assert _snapshot(tmp_path / "a") == snapshot
    # A different batching of the same rows produces the same bytes.
    second = ObjectStore(str(tmp_path / "b"))
    with PostgresSource(pg.readonly_url, batch_rows=1_777) as source:
        export_day(source, second, DAY, ExportSettings(parquet_row_group_rows=1_000_000))
    for name in ("csv/date=2024-01-15/audit_logs.csv", "ndjson/date=2024-01-15/audit_logs.ndjson"):
        assert (tmp_path / "b" / name).read_bytes() == snapshot[name]


def test_gzip_is_deterministic_and_replaces_the_plain_object(pg, tmp_path):
    pg.insert(generate_events(DAY, 500))
    store = ObjectStore(str(tmp_path / "x"))
    _export(pg, store)
    plain = (tmp_path / "x/ndjson/date=2024-01-15/audit_logs.ndjson").read_bytes()
    _export(pg, store, gzip=True)
    files = tree(tmp_path / "x")
    assert "ndjson/date=2024-01-15/audit_logs.ndjson.gz" in files and "ndjson/date=2024-01-15/audit_logs.ndjson" not in files
    assert "csv/date=2024-01-15/audit_logs.csv.gz" in files and "csv/date=2024-01-15/audit_logs.csv" not in files
    packed = (tmp_path / "x/ndjson/date=2024-01-15/audit_logs.ndjson.gz").read_bytes()
    assert gzip.decompress(packed) == plain
    _export(pg, store, gzip=True)
    assert (tmp_path / "x/ndjson/date=2024-01-15/audit_logs.ndjson.gz").read_bytes() == packed


def test_failure_before_publish_leaves_previous_version(pg, tmp_path):
    pg.insert(generate_events(DAY, 300))
    store = ObjectStore(str(tmp_path / "x"))
    _export(pg, store)
    before = _snapshot(tmp_path / "x")
    pg.insert(generate_events(DAY, 50, seed=99))

    def boom() -> None:
        raise RuntimeError("injected crash before publish")

    with PostgresSource(pg.readonly_url) as source, pytest.raises(RuntimeError, match="injected"):
        export_day(source, store, DAY, ExportSettings(), fail_before_publish=boom)
    assert _snapshot(tmp_path / "x") == before
    assert not list((tmp_path / "x" / ".staging").iterdir())  # staging cleaned up


def test_source_failure_mid_stream_publishes_nothing(pg, tmp_path):
    pg.insert(generate_events(DAY, 3_000))
    store = ObjectStore(str(tmp_path / "x"))
    _export(pg, store)
    before = _snapshot(tmp_path / "x")

    class Flaky(PostgresSource):
        def iter_batches(self, *args, **kwargs):
            for n, batch in enumerate(super().iter_batches(*args, **kwargs)):
                if n == 1:
                    raise SourceError("connection lost mid-stream (injected)")
                yield batch

    with Flaky(pg.readonly_url, batch_rows=100) as source, pytest.raises(SourceError, match="mid-stream"):
        export_day(source, store, DAY, ExportSettings())
    assert _snapshot(tmp_path / "x") == before


def test_a_reader_never_sees_a_partial_object(pg, tmp_path):
    """Publishing is a rename: at every instant the key holds a complete old or new file."""
    pg.insert(generate_events(DAY, 2_000))
    store = ObjectStore(str(tmp_path / "x"))
    _export(pg, store)
    key = tmp_path / "x/ndjson/date=2024-01-15/audit_logs.ndjson"
    complete = key.read_bytes()
    import threading

    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                data = key.read_bytes()
            except FileNotFoundError:
                seen.append(-1)
                continue
            seen.append(len(data) if data.endswith(b"\n") and data.count(b"\n") == 2_000 else -2)

    thread = threading.Thread(target=watch)
    thread.start()
    for _ in range(3):
        _export(pg, store)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the reader thread did not stop"
    assert seen and set(seen) == {len(complete)}
    assert len(read_ndjson_rows(key.read_bytes())) == 2_000


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("postgresql://postgres@127.0.0.1:1/nodb", r"cannot connect to the audit database .*127\.0\.0\.1:1.*AUDIT_DATABASE_URL"),
        ("postgresql://postgres@127.0.0.1:5432/no_such_database_here", r"cannot connect .*no_such_database_here.*AUDIT_DATABASE_URL"),
        ("mysql://u@h/db", r"AUDIT_DATABASE_URL must be a postgresql:// URL"),
    ],
)
def test_unreachable_source_is_named(url, match, tmp_path):
    with pytest.raises((SourceError, ConfigError), match=match), PostgresSource(url) as source:
        export_day(source, ObjectStore(str(tmp_path)), DAY, ExportSettings())
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_password_never_appears_in_errors(tmp_path):
    with pytest.raises(SourceError) as info, PostgresSource("postgresql://postgres:hunter2secret@127.0.0.1:1/db") as source:
        source.check()
    assert "hunter2secret" not in str(info.value)


def test_missing_table_and_columns_are_named(pg, tmp_path):
    with pytest.raises(SourceError, match=r"table audit_log not found.*GRANT SELECT"), PostgresSource(pg.readonly_url, table="audit_log") as source:
        source.check()
    with pg.connect() as conn:
        conn.execute("CREATE TABLE audit_logs_old AS SELECT id, type, created_at FROM audit_logs")
        conn.execute("GRANT SELECT ON audit_logs_old TO " + pg.name + "_ro")
    try:
        with pytest.raises(SourceError, match=r"lacks column\(s\) actor_id, actor_email"), PostgresSource(pg.readonly_url, table="audit_logs_old") as source:
            source.check()
    finally:
        with pg.connect() as conn:
            conn.execute("DROP TABLE audit_logs_old")


def test_no_select_privilege_is_named(pg):
    with pg.connect() as conn:
        conn.execute("REVOKE SELECT ON audit_logs FROM " + pg.name + "_ro")
    try:
        with pytest.raises(SourceError, match=r"(may not SELECT|not readable by this role)"), PostgresSource(pg.readonly_url) as source:
            source.check()
    finally:
        with pg.connect() as conn:
            conn.execute("GRANT SELECT ON audit_logs TO " + pg.name + "_ro")


def test_export_url_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"AUDIT_EXPORT_URL.*only a local path"):
        ObjectStore("gs://bucket/x")
    with pytest.raises(ConfigError, match="names no bucket"):
        ObjectStore("s3://")
    with pytest.raises(ConfigError, match="AUDIT_S3_KMS_KEY_ID"):
        ObjectStore("s3://b/x", sse="aws:kms")


def test_parquet_bytes_do_not_depend_on_source_batching(pg, tmp_path):
    # Row groups of exactly parquet_row_group_rows, and the same bytes to the last page, however the
    # source batched the rows: pyarrow cuts pages at chunk boundaries, so each group is made contiguous.
    import pyarrow.parquet as pq

    pg.insert(generate_events(DAY, 20_500))
    digests = set()
    for batch_rows in (100, 333, 5_000):
        store = ObjectStore(str(tmp_path / str(batch_rows)))
        with PostgresSource(pg.readonly_url, batch_rows=batch_rows) as source:
            result = export_day(source, store, DAY, ExportSettings(parquet_row_group_rows=10_000))
        digests.add(result.for_format("parquet")[0].sha256)
        meta = pq.ParquetFile(tmp_path / str(batch_rows) / "parquet/date=2024-01-15/audit_logs.parquet").metadata
        assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10_000, 10_000, 500]
    assert len(digests) == 1
