"""The one check pass per day: proved by checksums against S3 (moto over HTTP) and a local folder, never parsed."""

from __future__ import annotations

import datetime as dt
import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from audit_pipeline.core.errors import SourceError
from audit_pipeline.defs.exports import EXPORT_ASSETS, day_check_results
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.built_defs import export_assets
from audit_pipeline_tests.integrity.support import new_signer, write_private_key
from audit_pipeline_tests.standins.counting_s3 import CountingS3Server

DAY = dt.date(2024, 1, 15)
DATA_PREFIXES = ("/csv/", "/ndjson/", "/parquet/")


@pytest.fixture(scope="module")
def counting_s3() -> Iterator[CountingS3Server]:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    server = CountingS3Server().start()
    yield server
    server.stop()


def _configure(workdir: Path, pg, url: str, *, endpoint: str | None = None, integrity: bool = True) -> None:
    export: dict[str, object] = {"url": url}
    if endpoint:
        export["s3_endpoint_url"] = endpoint
    section: dict[str, object] = {"private_key_file": str(write_private_key(new_signer(), workdir / "key.pem"))} if integrity else {"enabled": False}
    (workdir / "audit_pipeline.yaml").write_text(yaml.safe_dump({"source": {"database_url": pg.readonly_url}, "export": export, "integrity": section}))


def _materialize(day: dt.date = DAY, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        export_assets(),
        partition_key=day.isoformat(),
        resources={"audit": AuditPipelineResource()},
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _verdicts(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string().removeprefix("audit_logs_"), e.check_name): e for e in result.get_asset_check_evaluations()}


def _s3_bucket(counting_s3: CountingS3Server) -> str:
    import boto3

    name = f"audit-checks-{dt.datetime.now().strftime('%H%M%S%f')}"
    boto3.client("s3", endpoint_url=counting_s3.endpoint_url, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.mark.slow
def test_untouched_day_on_s3_passes_without_downloading_a_data_object(pg, workdir, counting_s3, monkeypatch):
    pg.insert(generate_events(DAY, 30_000))
    bucket = _s3_bucket(counting_s3)
    _configure(workdir, pg, f"s3://{bucket}/audit", endpoint=counting_s3.endpoint_url)
    counts: list[int] = []
    real_count = PostgresSource.count
    monkeypatch.setattr(PostgresSource, "count", lambda self, *a, **k: counts.append(1) or real_count(self, *a, **k))
    counting_s3.reset()

    result = _materialize()

    assert result.success
    verdicts = _verdicts(result)
    assert len(verdicts) == 9 and all(v.passed for v in verdicts.values()), [v.description for v in verdicts.values() if not v.passed]
    assert len(counts) == 1  # the source is asked once for the whole day
    for fmt in EXPORT_ASSETS:
        (described,) = verdicts[(fmt, "complete")].metadata["objects"].value.values()
        assert described["verified_by"] == "s3-checksum"
    requests = counting_s3.requests
    published = sum(r.bytes_up for r in requests if r.method == "PUT" and r.path.startswith(tuple(f"/{bucket}/audit{p}" for p in DATA_PREFIXES)))
    data_gets = [r for r in requests if r.method == "GET" and any(p in r.path for p in DATA_PREFIXES)]
    assert published > 10_000_000
    assert all(r.range for r in data_gets), [r.path for r in data_gets if not r.range]  # never a whole data object
    downloaded = sum(r.bytes_down for r in data_gets)
    assert downloaded <= published / 100, (downloaded, published)
    heads = [r for r in requests if r.method == "HEAD" and r.path.rsplit("/", 1)[-1].startswith("audit_logs.")]
    assert len(heads) == 3


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["one byte changed", "truncated"])
def test_damaged_object_on_s3_fails_complete_and_integrity_naming_it(pg, workdir, counting_s3, damage):
    import boto3

    pg.insert(generate_events(DAY, 2_000))
    bucket = _s3_bucket(counting_s3)
    _configure(workdir, pg, f"s3://{bucket}/audit", endpoint=counting_s3.endpoint_url)
    assert _materialize().success
    client = boto3.client("s3", endpoint_url=counting_s3.endpoint_url, region_name="us-east-1")
    key = "audit/ndjson/date=2024-01-15/audit_logs.ndjson"
    data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    damaged = data[:1000] + bytes([data[1000] ^ 0x01]) + data[1001:] if damage == "one byte changed" else data[: len(data) // 2]
    client.put_object(Bucket=bucket, Key=key, Body=damaged)

    results = day_check_results(AuditPipelineResource(), DAY)

    for name in ("complete", "integrity"):
        assert not results[("ndjson", name)].passed
        assert f"object modified: ndjson/date={DAY}/audit_logs.ndjson" in (results[("ndjson", name)].description or "")
    assert all(results[(fmt, name)].passed for fmt in ("csv", "parquet") for name in ("complete", "schema", "integrity"))


@pytest.mark.parametrize("integrity", [True, False], ids=["manifest", "recorded-metadata"])
def test_damaged_object_in_a_local_folder_fails_complete(pg, workdir, integrity):
    pg.insert(generate_events(DAY, 500))
    _configure(workdir, pg, str(workdir / "exports"), integrity=integrity)
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(instance=instance)
    assert result.success and all(v.passed for v in _verdicts(result).values())
    path = workdir / "exports/csv/date=2024-01-15/audit_logs.csv"
    data = path.read_bytes()
    path.write_bytes(data[:-10])

    results = day_check_results(AuditPipelineResource(), DAY, instance=instance)

    complete = results[("csv", "complete")]
    assert not complete.passed and f"object modified: csv/date={DAY}/audit_logs.csv" in (complete.description or "")
    said = "manifests/date=2024-01-15.json says" if integrity else "the export's materialization metadata says"
    assert said in (complete.description or "")
    assert results[("csv", "integrity")].passed is not integrity
    assert results[("ndjson", "complete")].passed and results[("parquet", "complete")].passed


def test_rows_the_source_gained_fail_complete(pg, workdir):
    pg.insert(generate_events(DAY, 300))
    _configure(workdir, pg, str(workdir / "exports"))
    assert _materialize().success
    pg.insert(generate_events(DAY, 2, seed=7))

    results = day_check_results(AuditPipelineResource(), DAY, [("parquet", "complete"), ("csv", "schema")])

    assert set(results) == {("parquet", "complete"), ("csv", "schema")}
    assert not results[("parquet", "complete")].passed
    assert "parquet holds 300 rows but the source has 302" in (results[("parquet", "complete")].description or "")
    assert results[("csv", "schema")].passed


def test_a_source_that_cannot_count_fails_the_check_pass_in_one_line(pg, workdir):
    # The count runs beside the hashing; its failure is still the pass's, said in one line, never a verdict.
    pg.insert(generate_events(DAY, 50))
    _configure(workdir, pg, str(workdir / "exports"))
    assert _materialize().success
    config = yaml.safe_load((workdir / "audit_pipeline.yaml").read_text())
    config["source"]["database_url"] = "postgresql://nobody@127.0.0.1:9/audit"  # nothing listens on port 9
    (workdir / "audit_pipeline.yaml").write_text(yaml.safe_dump(config))

    with pytest.raises(SourceError, match="cannot connect to the audit database") as failure:
        day_check_results(AuditPipelineResource(), DAY)
    assert "\n" not in str(failure.value)
    # Without complete, nothing is counted: schema and integrity still answer.
    results = day_check_results(AuditPipelineResource(), DAY, [("csv", "schema"), ("csv", "integrity")])
    assert all(r.passed for r in results.values())


def test_schema_is_read_from_the_header_not_the_rows(pg, workdir):
    pg.insert(generate_events(DAY, 200))
    _configure(workdir, pg, str(workdir / "exports"))
    assert _materialize().success
    path = workdir / "exports/csv/date=2024-01-15/audit_logs.csv"
    path.write_bytes(path.read_bytes().replace(b"id,type,", b"id,kind,", 1))

    results = day_check_results(AuditPipelineResource(), DAY, [("csv", "schema"), ("ndjson", "schema"), ("parquet", "schema")])

    assert not results[("csv", "schema")].passed and "header is b'id,kind," in (results[("csv", "schema")].description or "")
    assert results[("ndjson", "schema")].passed and results[("parquet", "schema")].passed


def test_gzip_objects_are_checked_from_their_first_bytes(pg, workdir, monkeypatch):
    pg.insert(generate_events(DAY, 3_000))
    _configure(workdir, pg, str(workdir / "exports"))
    monkeypatch.setenv("AUDIT_EXPORT_GZIP", "true")
    result = _materialize()
    assert result.success
    verdicts = _verdicts(result)
    assert len(verdicts) == 9 and all(v.passed for v in verdicts.values()), [v.description for v in verdicts.values() if not v.passed]
    path = workdir / "exports/ndjson/date=2024-01-15/audit_logs.ndjson.gz"
    lines = gzip.decompress(path.read_bytes()).split(b"\n", 1)
    path.write_bytes(gzip.compress(lines[0].replace(b'"type"', b'"kind"', 1) + b"\n" + lines[1], mtime=0))

    results = day_check_results(AuditPipelineResource(), DAY, [("ndjson", "schema"), ("ndjson", "complete")])

    assert not results[("ndjson", "schema")].passed and "'kind'" in (results[("ndjson", "schema")].description or "")
    assert not results[("ndjson", "complete")].passed and "object modified: ndjson/date=2024-01-15/audit_logs.ndjson.gz" in (
        results[("ndjson", "complete")].description or ""
    )


def test_a_local_day_is_read_once_per_object(pg, workdir, monkeypatch):
    """In a process that did not write them, re-hashing reads each object once; the schema comes from the
    ends that read kept, not a second read."""
    from audit_pipeline.storage import local_backend
    from audit_pipeline.storage.object_store import ObjectStore

    pg.insert(generate_events(DAY, 2_000))
    _configure(workdir, pg, str(workdir / "exports"))
    assert _materialize().success
    monkeypatch.setattr(local_backend, "_WRITTEN_HERE", {})  # as another process sees the folder
    ranged: list[str] = []
    real = ObjectStore.read_range
    monkeypatch.setattr(ObjectStore, "read_range", lambda self, key, start, end: ranged.append(key) or real(self, key, start, end))

    results = day_check_results(AuditPipelineResource(), DAY)

    assert all(r.passed for r in results.values())
    assert {
        r.metadata["objects"].value[f"{fmt}/date={DAY}/audit_logs.{fmt}"]["verified_by"] for fmt in EXPORT_ASSETS for r in [results[(fmt, "complete")]]
    } == {"read"}
    assert ranged == []


def test_the_writing_process_proves_its_objects_without_reading_them(pg, workdir, monkeypatch):
    """The export notes each object's inode status; the check pass in the same process compares it and reads
    no object back (only the header, first line and footer for schema)."""
    from audit_pipeline.storage.object_store import ObjectStore

    pg.insert(generate_events(DAY, 2_000))
    _configure(workdir, pg, str(workdir / "exports"))
    opened: list[str] = []
    real_open = ObjectStore.open
    monkeypatch.setattr(ObjectStore, "open", lambda self, key: opened.append(key) or real_open(self, key))
    read_back = []
    real_digest = ObjectStore.digest
    monkeypatch.setattr(ObjectStore, "digest", lambda self, key: read_back.append(d := real_digest(self, key)) or d)

    result = _materialize()

    assert result.success and all(v.passed for v in _verdicts(result).values())
    assert {d.source for d in read_back} == {"unchanged-since-written"} and sum(d.bytes_read for d in read_back) == 0
    assert len(read_back) == 3 and opened == []
    described = {e.asset_key.to_user_string(): e.metadata["objects"].value for e in result.get_asset_check_evaluations() if e.check_name == "complete"}
    assert {o["verified_by"] for objects in described.values() for o in objects.values()} == {"unchanged-since-written"}


@pytest.mark.parametrize("change", ["same-size-byte-then-mtime-restored", "truncated", "replaced-by-a-copy", "re-timed-only"])
def test_an_object_changed_after_the_export_is_re_hashed_in_the_same_process(pg, workdir, change):
    """A hostile edit that keeps the size and sets the modification time back still moves the ctime."""
    import shutil

    pg.insert(generate_events(DAY, 800))
    _configure(workdir, pg, str(workdir / "exports"))
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(instance=instance).success
    path = workdir / "exports/ndjson/date=2024-01-15/audit_logs.ndjson"
    before = os.stat(path)
    if change == "same-size-byte-then-mtime-restored":
        with open(path, "r+b") as handle:
            handle.seek(200)
            byte = handle.read(1)
            handle.seek(200)
            handle.write(b"X" if byte != b"X" else b"Y")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif change == "truncated":
        os.truncate(path, before.st_size - 1)
    elif change == "replaced-by-a-copy":
        copy = path.with_suffix(".copy")
        data = path.read_bytes()
        copy.write_bytes(data[:100] + (b"X" if data[100:101] != b"X" else b"Y") + data[101:])
        shutil.copystat(path, copy)
        os.replace(copy, path)
    else:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))

    results = day_check_results(AuditPipelineResource(), DAY, instance=instance)

    complete = results[("ndjson", "complete")]
    described = complete.metadata["objects"].value[f"ndjson/date={DAY}/audit_logs.ndjson"]
    assert described["verified_by"] == "read"
    if change == "re-timed-only":  # the bytes are the sealed ones: re-hashed and passed
        assert complete.passed
    else:
        assert not complete.passed and f"object modified: ndjson/date={DAY}/audit_logs.ndjson" in (complete.description or "")
    assert results[("csv", "complete")].metadata["objects"].value[f"csv/date={DAY}/audit_logs.csv"]["verified_by"] == "unchanged-since-written"
