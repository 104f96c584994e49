"""``audit-pipeline query`` over a local and an S3 archive exported from PostgreSQL."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import s3fs
from click.testing import CliRunner

from audit_pipeline.cli import main
from audit_pipeline.export import export_day
from audit_pipeline.settings import ExportSettings
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage import ObjectStore

DAYS = [dt.date(2024, 3, 1) + dt.timedelta(days=i) for i in range(4)]
PER_DAY = [400, 650, 300, 520]

# The analyst's question: failed logins per country over two days.
FAILED_LOGINS_SQL = (
    "SELECT country, count(*) AS failed FROM audit_logs WHERE date BETWEEN '2024-03-02' AND '2024-03-03'"
    " AND type LIKE 'user.login%' AND result = 'failure' GROUP BY country ORDER BY failed DESC, country"
)
FAILED_LOGINS_PG = (
    "SELECT country, count(*) FROM audit_logs WHERE created_at >= '2024-03-02' AND created_at < '2024-03-04'"
    " AND type LIKE 'user.login%%' AND result = 'failure' GROUP BY country ORDER BY 2 DESC, country"
)


def _export_all(pg, store: ObjectStore) -> None:
    pg.insert(e for day, count in zip(DAYS, PER_DAY, strict=True) for e in generate_events(day, count))
    with PostgresSource(pg.readonly_url, batch_rows=1_000) as source:
        for day in DAYS:
            export_day(source, store, day, ExportSettings())


def _query(*args: str, env: dict[str, str] | None = None):
    return CliRunner(env=env).invoke(main, ["query", *args])


def _rows_from_ndjson(text: str) -> list[tuple[str | None, int]]:
    return [(row["country"], row["failed"]) for row in map(json.loads, text.splitlines())]


@pytest.fixture
def local_archive(pg, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    store = ObjectStore(str(workdir / "archive"))
    _export_all(pg, store)
    monkeypatch.setenv("AUDIT_EXPORT_URL", store.root)
    return store


@pytest.fixture
def s3_archive(pg, workdir: Path, s3_server, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    bucket = s3_server.new_bucket()
    store = ObjectStore(f"s3://{bucket}/audit", endpoint_url=s3_server.endpoint_url)
    _export_all(pg, store)
    monkeypatch.setenv("AUDIT_EXPORT_URL", f"s3://{bucket}/audit")
    monkeypatch.setenv("AUDIT_S3_ENDPOINT_URL", s3_server.endpoint_url)
    return store


def _corrupt_other_days(store: ObjectStore, keep: set[dt.date]) -> None:
    """Replace the Parquet of every other day by bytes no reader accepts: opening one fails the query."""
    for day in DAYS:
        if day not in keep:
            store.put_bytes(f"parquet/date={day}/audit_logs.parquet", b"not parquet", "application/octet-stream")


def test_local_answer_equals_the_source_table_and_reads_only_its_days(pg, local_archive: ObjectStore) -> None:
    _corrupt_other_days(local_archive, keep={DAYS[1], DAYS[2]})
    result = _query(FAILED_LOGINS_SQL, "--format", "ndjson")
    assert result.exit_code == 0, result.output
    expected = [(c, n) for c, n in pg.fetch(FAILED_LOGINS_PG)]
    assert expected and _rows_from_ndjson(result.output) == expected
    # Without the date condition the corrupt days are opened, and the query fails on them.
    unpruned = _query(FAILED_LOGINS_SQL.replace("date BETWEEN '2024-03-02' AND '2024-03-03' AND", "").replace("WHERE", "WHERE"))
    assert unpruned.exit_code == 2
    assert "Traceback" not in unpruned.output


def test_every_column_comes_back_exactly(pg, local_archive: ObjectStore, workdir: Path) -> None:
    result = _query(
        "SELECT * EXCLUDE (date) FROM audit_logs ORDER BY created_at, id",
        "--from",
        "2024-03-04",
        "--to",
        "2024-03-04",
        "--format",
        "parquet",
        "-o",
        "day.parquet",
    )
    assert result.exit_code == 0, result.output
    table = pq.read_table(workdir / "day.parquet")
    rows = pg.fetch(
        "SELECT id, nullif(format('%s', ip_address), ''), created_at, metadata::text FROM audit_logs WHERE created_at >= '2024-03-04' ORDER BY created_at, id"
    )
    assert table.num_rows == PER_DAY[3] == len(rows)
    assert table.column("id").to_pylist() == [r[0] for r in rows]
    assert table.column("ip_address").to_pylist() == [r[1] for r in rows]
    assert table.column("created_at").to_pylist() == [r[2] for r in rows]
    assert table.column("metadata").to_pylist() == [r[3] for r in rows]
    assert not [p.name for p in workdir.iterdir() if ".tmp-" in p.name]


def test_from_to_limits_the_view_and_ndjson_carries_the_date(local_archive: ObjectStore) -> None:
    result = _query(
        "SELECT date, count(*) AS events FROM audit_logs GROUP BY date ORDER BY date", "--from", "2024-03-02", "--to", "2024-03-03", "--format", "ndjson"
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == [
        {"date": "2024-03-02", "events": PER_DAY[1]},
        {"date": "2024-03-03", "events": PER_DAY[2]},
    ]


def test_terminal_table_is_aligned(local_archive: ObjectStore) -> None:
    result = _query("SELECT date, count(*) AS events FROM audit_logs GROUP BY date ORDER BY date")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["date", "events"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert [line.split() for line in lines[2:6]] == [[str(d), str(n)] for d, n in zip(DAYS, PER_DAY, strict=True)]
    assert len({len(line) for line in lines[:6]}) == 1  # numbers right-aligned under their header
    assert lines[-1] == "(4 rows)"


def test_bad_sql_exits_2_with_duckdbs_message(local_archive: ObjectStore) -> None:
    result = _query("SELECT nosuch FROM audit_logs")
    assert result.exit_code == 2
    assert result.output.strip().startswith('error: Binder Error: Referenced column "nosuch" not found')
    assert len(result.output.strip().splitlines()) == 1
    syntax = _query("SELEC 1")
    assert syntax.exit_code == 2 and "Parser Error: syntax error" in syntax.output


def test_an_empty_archive_is_one_clear_line(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUDIT_EXPORT_URL", str(workdir / "nothing-yet"))
    result = _query("SELECT count(*) FROM audit_logs")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: no Parquet exports under file://{workdir / 'nothing-yet'}/parquet/ yet; export some days first "
        "(audit-pipeline export-day YYYY-MM-DD, or the daily_export_job), or point AUDIT_EXPORT_URL at the archive"
    ]


def test_s3_archive_opens_only_the_objects_of_its_days(pg, s3_archive: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    original = s3fs.S3FileSystem._open

    def counting_open(self, path, *args, **kwargs):
        opened.append(str(path))
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_open", counting_open)
    result = _query(FAILED_LOGINS_SQL, "--format", "ndjson")
    assert result.exit_code == 0, result.output
    assert _rows_from_ndjson(result.output) == [(c, n) for c, n in pg.fetch(FAILED_LOGINS_PG)]
    assert opened and {p.split("date=")[1].split("/")[0] for p in opened} == {"2024-03-02", "2024-03-03"}

    opened.clear()
    everything = _query("SELECT count(*) AS n FROM audit_logs", "--format", "csv")
    assert everything.exit_code == 0, everything.output
    assert everything.output.splitlines()[1] == str(sum(PER_DAY))
    assert {p.split("date=")[1].split("/")[0] for p in opened} == {str(d) for d in DAYS}


def test_s3_output_parquet_to_stdout(s3_archive: ObjectStore) -> None:
    result = CliRunner().invoke(main, ["query", "SELECT id FROM audit_logs ORDER BY id", "--format", "parquet"])
    assert result.exit_code == 0
    assert pq.read_table(io.BytesIO(result.stdout_bytes)).num_rows == sum(PER_DAY)


def test_ndjson_rows_and_statements_without_a_result(pg, local_archive: ObjectStore) -> None:
    result = _query("SELECT id, result, country FROM audit_logs WHERE date = '2024-03-01' ORDER BY id LIMIT 3", "--format", "ndjson")
    assert result.exit_code == 0, result.output
    expected = pg.fetch("SELECT id, result, country FROM audit_logs WHERE created_at < '2024-03-02' ORDER BY id COLLATE \"C\" LIMIT 3")
    assert [json.loads(line) for line in result.output.splitlines()] == [{"id": i, "result": r, "country": c} for i, r, c in expected]
    created = _query("CREATE TABLE scratch AS SELECT 1 AS one;", "--format", "ndjson")  # not a query: DuckDB's own answer, still NDJSON
    assert created.exit_code == 0, created.output
    assert all(isinstance(json.loads(line), dict) for line in created.output.splitlines())
