"""``audit-pipeline query`` over a local and an S3 archive exported from PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import stat
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import s3fs
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.analysis.fifo import fifo_reader

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


def _hashes(store: ObjectStore) -> dict[str, str]:
    """Every object of the store (the exports, manifests, everything) by key, as SHA-256."""
    return {key: hashlib.sha256(store.read_bytes(key)).hexdigest() for key in store.list("")}


def _refused(result, statement_type: str, names: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"error: {statement_type} refused: "), lines[0]
    assert names in lines[0], lines[0]
    assert "read-only" in lines[0]


def test_query_is_read_only_every_forbidden_statement_is_refused_and_the_archive_unchanged(local_archive: ObjectStore, workdir: Path) -> None:
    day_object = Path(local_archive.path(f"parquet/date={DAYS[0]}/audit_logs.parquet"))
    outside = workdir / "outside.csv"
    outside.write_text("secret\n1\n")
    before = _hashes(local_archive)
    forbidden = [
        (f"COPY (SELECT 1 AS one) TO '{workdir / 'copied.csv'}'", "COPY", str(workdir / "copied.csv")),
        # The attack that rewrote an archived object (2,000 -> 1,966 rows) on the old code.
        (f"COPY (SELECT * EXCLUDE (date) FROM audit_logs LIMIT 3) TO '{day_object}' (FORMAT parquet)", "COPY", str(day_object)),
        (f"COPY (SELECT 1 AS one) TO '{day_object}' (FORMAT csv, USE_TMP_FILE false)", "COPY", str(day_object)),
        (f"ATTACH '{workdir / 'attached.duckdb'}' AS other", "ATTACH", str(workdir / "attached.duckdb")),
        ("SELECT * FROM read_text('/etc/passwd')", "SELECT", "/etc/passwd"),
        (f"SELECT * FROM read_csv('{outside}')", "SELECT", str(outside)),
        (f"SELECT * FROM read_parquet('{day_object}')", "SELECT", str(day_object)),  # the archive too: only through the view
        ("INSTALL httpfs", "LOAD", "extensions"),
        ("LOAD httpfs", "LOAD", "Loading external extensions is disabled"),
        ("SET enable_external_access = true", "SET", '"enable_external_access"'),
        ("SET lock_configuration = false", "SET", '"lock_configuration"'),
        ("RESET enable_external_access", "SET", '"enable_external_access"'),
        ("SET allowed_directories = ['/']", "SET", '"allowed_directories"'),
        ("SET python_enable_replacements = true", "SET", '"python_enable_replacements"'),
    ]
    for statement, kind, names in forbidden:
        for output_format in ("table", "ndjson"):  # ndjson first tries the statement wrapped in to_json
            _refused(_query(statement, "--format", output_format), kind, names)
    assert _hashes(local_archive) == before
    assert sorted(p.name for p in workdir.iterdir()) == ["archive", "outside.csv"]  # nothing created beside it either
    # The view still answers, with every row of the object a COPY tried to overwrite.
    counted = _query("SELECT count(*) AS n FROM audit_logs WHERE date = DATE '2024-03-01'", "--format", "csv")
    assert counted.exit_code == 0 and counted.output.splitlines() == ['"n"', str(PER_DAY[0])]


def test_s3_query_cannot_write_or_read_the_bucket_around_the_view(s3_archive: ObjectStore, s3_server) -> None:
    before = _hashes(s3_archive)
    day_url = f"s3://{s3_archive.path(f'parquet/date={DAYS[1]}/audit_logs.parquet')}"
    manifest_keys = [k for k in before if not k.startswith("parquet/")]
    assert manifest_keys  # the CSV/NDJSON objects and manifests beside the Parquet ones
    elsewhere = f"s3://{s3_archive.bucket}/elsewhere.csv"
    manifest_url = f"s3://{s3_archive.path(manifest_keys[0])}"
    attempts = [
        (f"COPY (SELECT * EXCLUDE (date) FROM audit_logs LIMIT 3) TO '{day_url}' (FORMAT parquet)", "COPY", day_url),
        (f"COPY (SELECT 1 AS one) TO '{elsewhere}'", "COPY", elsewhere),
        (f"SELECT * FROM read_parquet('{day_url}')", "SELECT", day_url),
        (f"SELECT * FROM read_text('{manifest_url}')", "SELECT", manifest_url),
    ]
    for statement, kind, names in attempts:
        _refused(_query(statement), kind, names)
    assert _hashes(s3_archive) == before
    assert _query("SELECT count(*) AS n FROM audit_logs", "--format", "csv").output.splitlines() == ['"n"', str(sum(PER_DAY))]


def test_an_empty_sql_or_several_statements_exit_2(local_archive: ObjectStore) -> None:
    for empty in ("", "   ", " ; ", " -- only a comment\n"):
        result = _query(empty)
        assert result.exit_code == 2, (empty, result.output)
        assert result.output.strip() == 'error: the SQL is empty: give one statement, e.g. audit-pipeline query "SELECT count(*) FROM audit_logs"'
    several = _query("SELECT 1; SELECT 2")
    assert several.exit_code == 2
    assert several.output.strip() == "error: the SQL holds 2 statements (SELECT, SELECT); give one per command, or combine them into one query"
    one = _query("SELECT 2 AS two;", "--format", "csv")  # one statement with its semicolon is fine
    assert one.exit_code == 0 and one.output.splitlines() == ['"two"', "2"]


def test_a_table_larger_than_table_rows_is_refused_before_anything_is_printed(local_archive: ObjectStore, workdir: Path) -> None:
    per_day = "SELECT date, count(*) AS events FROM audit_logs GROUP BY date ORDER BY date"
    fits = _query(per_day, "--table-rows", "4")
    assert fits.exit_code == 0 and fits.output.splitlines()[-1] == "(4 rows)"
    refused = CliRunner().invoke(main, ["query", per_day, "--table-rows", "3"])
    assert refused.exit_code == 2
    assert refused.stdout == ""
    assert refused.stderr.strip() == (
        "error: the result has more than 3 rows, more than --format table shows (--table-rows); "
        "write it with --format csv (or ndjson, parquet), e.g. --format csv --output result.csv, or add a LIMIT"
    )
    to_file = _query("SELECT id FROM audit_logs", "--table-rows", "1000", "--output", "ids.txt")
    assert to_file.exit_code == 2 and not (workdir / "ids.txt").exists()
    as_csv = _query("SELECT id FROM audit_logs", "--table-rows", "3", "--format", "csv", "--output", "ids.csv")
    assert as_csv.exit_code == 0  # the limit is the table's only
    assert len((workdir / "ids.csv").read_text().splitlines()) == 1 + sum(PER_DAY)


COUNTS_SQL = "SELECT date, count(*) AS events FROM audit_logs GROUP BY date ORDER BY date"
COUNTS_CSV = "date,events\n" + "".join(f"{d},{n}\n" for d, n in zip(DAYS, PER_DAY, strict=True))


def test_output_to_a_fifo_is_written_into_the_pipe(local_archive: ObjectStore, workdir: Path) -> None:
    with fifo_reader(workdir / "pipe") as received:
        result = _query(COUNTS_SQL, "--format", "csv", "--output", "pipe")
        assert result.exit_code == 0, result.output
    assert received == [COUNTS_CSV.replace("date,events", '"date","events"').encode()]
    assert stat.S_ISFIFO((workdir / "pipe").lstat().st_mode)  # still the FIFO, not a file renamed over it
    assert [p.name for p in workdir.iterdir() if p.name not in ("archive", "pipe")] == []


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(local_archive: ObjectStore, workdir: Path) -> None:
    (workdir / "results").mkdir()
    target = workdir / "results" / "counts.csv"
    target.write_text("old\n")
    target.chmod(0o640)
    (workdir / "latest.csv").symlink_to(target)
    result = _query(COUNTS_SQL, "--format", "csv", "--output", "latest.csv")
    assert result.exit_code == 0, result.output
    assert (workdir / "latest.csv").is_symlink() and os.readlink(workdir / "latest.csv") == str(target)
    assert target.read_text() == COUNTS_CSV.replace("date,events", '"date","events"')
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the replaced file keeps its mode
    assert sorted(p.name for p in (workdir / "results").iterdir()) == ["counts.csv"]  # no temporary left
    dangling = workdir / "next.csv"
    dangling.symlink_to(workdir / "results" / "next.csv")  # a link to a file not written yet
    assert _query(COUNTS_SQL, "--format", "csv", "--output", str(dangling)).exit_code == 0
    assert dangling.is_symlink() and (workdir / "results" / "next.csv").read_text() == target.read_text()


def test_output_to_dev_null_leaves_the_device(local_archive: ObjectStore) -> None:
    result = _query(COUNTS_SQL, "--format", "parquet", "--output", "/dev/null")
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
