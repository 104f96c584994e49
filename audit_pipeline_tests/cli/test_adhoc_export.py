"""``audit-pipeline export``: the documented CSV/NDJSON/Parquet of any range and filter, checked against SQL."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import pty
import re
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from audit_pipeline.cli.adhoc_export import _ProgressLine
from audit_pipeline.cli.app import main
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.exports.day import export_day
from audit_pipeline.sources.base import TimeRange
from audit_pipeline.sources.postgres import PostgresSource
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.analysis.fifo import fifo_reader
from audit_pipeline_tests.helpers import read_csv_rows
from audit_pipeline_tests.standins.hellojohn_api import DEFAULT_KEY, serve_hellojohn_api

DAY = dt.date(2024, 1, 15)
FILTERED = [
    "--from",
    "2024-01-14T12:00:00Z",
    "--to",
    "2024-01-15T18:30:00+02:00",  # 16:30Z
    "--type",
    "user.*",
    "--type",
    "org.member_added",
    "--tenant",
    "ten_0003",
    "--tenant",
    "ten_001?",
]
FILTERED_SQL = (
    "created_at >= '2024-01-14T12:00:00Z' AND created_at < '2024-01-15T16:30:00Z'"
    " AND (starts_with(type, 'user.') OR type = 'org.member_added')"
    " AND (tenant_id = 'ten_0003' OR (starts_with(tenant_id, 'ten_001') AND length(tenant_id) = 8))"
)


def sql_rows(pg, where: str) -> list[dict]:
    query = (
        "SELECT id, type, actor_id, actor_email, actor_type, resource_id, resource_type, tenant_id, organization_id,"
        " nullif(format('%s', ip_address), ''), country, result,"
        " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), metadata::text"
        f' FROM audit_logs WHERE {where} ORDER BY created_at, id COLLATE "C"'
    )
    return [dict(zip(COLUMNS, row, strict=True)) for row in pg.fetch(query)]


@pytest.fixture
def configured(pg, workdir: Path):
    for day in (DAY - dt.timedelta(days=1), DAY, DAY + dt.timedelta(days=1)):
        pg.insert(generate_events(day, 800))
    pg.insert(
        [
            {"id": "edge-from", "type": "user.login", "tenant_id": "ten_0003", "created_at": "2024-01-14 12:00:00+00"},
            {"id": "edge-to", "type": "user.login", "tenant_id": "ten_0003", "created_at": "2024-01-15 16:30:00+00"},
            {"id": "formula", "type": "user.login", "tenant_id": "ten_0003", "created_at": "2024-01-15 01:00:00+00", "actor_email": "=cmd()"},
            {"id": "numbers", "type": "user.login", "tenant_id": "ten_0003", "created_at": "2024-01-15 02:00:00+00", "metadata": {"n": 1.50, "big": 2**70}},
        ]
    )
    (workdir / "audit_pipeline.yaml").write_text(f"source:\n  database_url: {pg.readonly_url}\n")
    return pg, workdir


def run(*args: str):
    return CliRunner().invoke(main, ["export", *args], catch_exceptions=False)


def test_filtered_range_ndjson_and_csv_hold_exactly_the_matching_rows(configured):
    pg, workdir = configured
    expected = sql_rows(pg, FILTERED_SQL)
    assert 50 < len(expected) < 800 and expected[0]["id"] == "edge-from" and "edge-to" not in [r["id"] for r in expected]

    result = run("--format", "ndjson", *FILTERED, "--output", "out.ndjson")
    assert result.exit_code == 0, result.output
    lines = (workdir / "out.ndjson").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(expected)
    for line, row in zip(lines, expected, strict=True):
        obj = json.loads(line, parse_float=Decimal)
        assert list(obj) == list(COLUMNS)
        assert {k: v for k, v in obj.items() if k != "metadata"} == {k: v for k, v in row.items() if k != "metadata"}
        assert line.endswith(',"metadata":' + row["metadata"] + "}")  # jsonb text, every digit
    assert f"exported {len(expected):,} events" in result.stderr

    assert run("--format", "csv", *FILTERED, "--output", "out.csv").exit_code == 0
    data = (workdir / "out.csv").read_bytes()
    assert data.startswith(
        b"id,type,actor_id,actor_email,actor_type,resource_id,resource_type,tenant_id,organization_id,ip_address,country,result,created_at,metadata\r\n"
    )
    rows = read_csv_rows(data)
    assert [r["id"] for r in rows] == [r["id"] for r in expected]
    for got, row in zip(rows, expected, strict=True):
        for column in COLUMNS:
            want = "" if row[column] is None else row[column]
            assert got[column] in (want, "'" + want), (row["id"], column)  # "'" only for formula-like cells
    assert next(r for r in rows if r["id"] == "formula")["actor_email"] == "'=cmd()"


def test_organization_filter_and_json_synonym_to_stdout(configured):
    pg, _ = configured
    expected = sql_rows(pg, "created_at >= '2024-01-15Z' AND created_at < '2024-01-16Z' AND organization_id IN ('org_00007', 'org_00150')")
    assert expected
    args = ["--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z", "--organization", "org_00007", "--organization", "org_00150"]
    result = run("--format", "json", *args, "--output", "-")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout_bytes.splitlines()] == [r["id"] for r in expected]
    assert result.stderr == ""  # no progress or summary when stderr is no terminal and output is stdout


def test_a_whole_day_is_byte_identical_to_the_daily_export(configured, tmp_path: Path):
    pg, workdir = configured
    store = ObjectStore(str(tmp_path / "daily"))
    with PostgresSource(pg.readonly_url) as source:
        daily = export_day(source, store, DAY, ExportSettings())
    day_args = ["--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z"]
    for obj in daily.objects:
        assert run("--format", obj.format, *day_args, "--output", f"day.{obj.format}").exit_code == 0
        assert (workdir / f"day.{obj.format}").read_bytes() == store.read_bytes(obj.key), obj.format
    piped = run("--format", "parquet", *day_args, "--output", "-")  # not a terminal: spooled, then copied out
    assert piped.exit_code == 0
    assert piped.stdout_bytes == (workdir / "day.parquet").read_bytes()
    assert pq.read_table(io.BytesIO(piped.stdout_bytes)).num_rows == daily.rows


def test_the_api_source_gives_the_same_output_as_postgres(configured):
    pg, workdir = configured
    assert run("--format", "csv", *FILTERED, "--output", "from_pg.csv").exit_code == 0
    with serve_hellojohn_api(pg.url, rate_limit_every=7, retry_after=0) as api:
        (workdir / "api.yaml").write_text(f"source:\n  type: hellojohn_api\n  base_url: {api.base_url}\n  secret_key: ${{HJ_SECRET_KEY}}\n")
        env = {"HJ_SECRET_KEY": DEFAULT_KEY}
        result = CliRunner(env=env).invoke(main, ["--config", "api.yaml", "export", *FILTERED, "--output", "from_api.csv"], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        assert (workdir / "from_api.csv").read_bytes() == (workdir / "from_pg.csv").read_bytes()
        refused = CliRunner(env={"HJ_SECRET_KEY": "sk_wrong_key_42"}).invoke(main, ["--config", "api.yaml", "export", *FILTERED, "-o", "x.csv"])
    assert refused.exit_code == 1
    assert "source.secret_key" in refused.stderr and "sk_wrong_key_42" not in refused.stderr + refused.stdout
    assert not (workdir / "x.csv").exists()


def test_a_failed_read_leaves_the_previous_file_untouched(configured):
    pg, workdir = configured
    (workdir / "out.csv").write_bytes(b"previous export\n")
    pages = iter(range(1000))

    def corrupt_third_page(text: str) -> str:  # the third page of the list, or the third line of the export stream
        return re.sub(r'"type": ?"', '"type": 1, "x": "', text, count=1) if next(pages) == 2 else text

    with serve_hellojohn_api(pg.url, rewrite=corrupt_third_page) as api:
        (workdir / "api.yaml").write_text(f"source:\n  type: hellojohn_api\n  base_url: {api.base_url}\n  secret_key: {DEFAULT_KEY}\n")
        result = CliRunner().invoke(main, ["--config", "api.yaml", "export", *FILTERED[:4], "--output", "out.csv"])
    assert result.exit_code == 1 and "expected a string or null" in result.stderr
    assert (workdir / "out.csv").read_bytes() == b"previous export\n"
    assert sorted(p.name for p in workdir.iterdir()) == ["api.yaml", "audit_pipeline.yaml", "out.csv"]  # no partial file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2024-01-15T00:00:00", "--to", "2024-01-16T00:00:00Z"], "--from: '2024-01-15T00:00:00' has no offset; add Z"),
        (["--from", "2024-01-15", "--to", "2024-01-16T00:00:00Z"], "--from: '2024-01-15' is a date, not a time"),
        (["--from", "2024-01-15T00:00:00Z", "--to", "yesterday"], "--to: 'yesterday' is not an ISO 8601 time"),
        (["--from", "2024-01-15T00:00:00Z", "--to", "2024-13-01T00:00:00Z"], "--to: '2024-13-01T00:00:00Z' is not an ISO 8601 time"),
        (["--from", "2024-01-16T00:00:00Z", "--to", "2024-01-15T00:00:00Z"], "must be after --from"),
        (["--from", "2024-01-16T00:00:00Z", "--to", "2024-01-16T01:00:00+01:00"], "must be after --from"),
        (["--from", "2024-01-15T00:00:00.0000001Z", "--to", "2024-01-16T00:00:00Z"], "more than microsecond precision"),
        (["--format", "xml", "--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z"], "--format 'xml' is not one of csv, ndjson, json, parquet"),
        (["--type", "user.[ab]", "--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z"], "--type: pattern 'user.[ab]': character classes"),
        (["--tenant", "", "--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z"], "--tenant: a pattern cannot be empty"),
        (["--organization", "", "--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z"], "--organization cannot be empty"),
        (["--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z", "-o", "missing/out.csv"], "directory missing does not exist"),
        (["--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z", "-o", "."], "is a directory"),
        (["--to", "2024-01-16T00:00:00Z"], "Missing option '--from'"),
    ],
)
def test_bad_arguments_are_clear_errors_with_exit_2(configured, args, message):
    _, workdir = configured
    result = CliRunner().invoke(main, ["export", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert sorted(p.name for p in workdir.iterdir()) == ["audit_pipeline.yaml"]


def test_a_configuration_error_exits_2_naming_the_key(workdir: Path):
    (workdir / "audit_pipeline.yaml").write_text("source:\n  type: hellojohn_api\n")
    result = CliRunner().invoke(main, ["export", "--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z"])
    assert result.exit_code == 2 and "source.base_url: is required" in result.stderr


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from audit_pipeline.cli import main; main()", "export", *args]


@pytest.mark.slow
def test_progress_on_a_terminal_stderr_only_and_never_in_the_data(configured):
    _, workdir = configured
    leader, follower = pty.openpty()
    args = ["--from", "2024-01-14T00:00:00Z", "--to", "2024-01-17T00:00:00Z", "-o", "-"]
    proc = subprocess.run(_cli(*args), cwd=workdir, stdout=subprocess.PIPE, stderr=follower, timeout=120, check=False)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    stderr = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "\rexported " in stderr and ", up to 2024-01-1" in stderr and "% of the range)" in stderr  # the redrawn line
    assert "exported 2,404 events" in stderr  # the final line: 3 days of 800 plus the 4 extra events
    assert read_csv_rows(proc.stdout)[-1]["created_at"].startswith("2024-01-16T")
    quiet = subprocess.run(_cli(*args), cwd=workdir, capture_output=True, timeout=120, check=False)
    assert quiet.returncode == 0 and quiet.stderr == b"" and quiet.stdout == proc.stdout


def test_progress_line_reports_events_and_share_of_the_range(capsys):
    start = dt.datetime(2024, 1, 15, tzinfo=dt.UTC)
    line = _ProgressLine(TimeRange(start, start + dt.timedelta(hours=10)))
    line(1234, start + dt.timedelta(hours=4))
    line.finish()
    err = capsys.readouterr().err
    assert "exported 1,234 events, up to 2024-01-15T04:00:00Z (40% of the range)" in err and err.endswith("\n")


@pytest.mark.slow
def test_a_reader_that_goes_away_ends_the_export_quietly(configured):
    _, workdir = configured
    proc = subprocess.Popen(_cli("--from", "2024-01-14T00:00:00Z", "--to", "2024-01-17T00:00:00Z"), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"id,type,")
    proc.stdout.close()  # like `| head -1`
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert b"Traceback" not in stderr


DAY_ARGS = ["--from", "2024-01-15T00:00:00Z", "--to", "2024-01-16T00:00:00Z"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_output_to_a_fifo_is_written_into_the_pipe(configured, fmt: str):
    _, workdir = configured
    expected = run("--format", fmt, *DAY_ARGS, "--output", "-").stdout_bytes
    with fifo_reader(workdir / "pipe") as received:
        result = run("--format", fmt, *DAY_ARGS, "--output", "pipe")
        assert result.exit_code == 0, result.stderr
    assert received == [expected] and len(expected) > 1000
    assert stat.S_ISFIFO((workdir / "pipe").lstat().st_mode)
    assert sorted(p.name for p in workdir.iterdir()) == ["audit_pipeline.yaml", "pipe"]


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(configured):
    _, workdir = configured
    (workdir / "exports").mkdir()
    target = workdir / "exports" / "day.csv"
    target.write_bytes(b"older export\n")
    (workdir / "latest.csv").symlink_to(target)
    result = run("--format", "csv", *DAY_ARGS, "--output", "latest.csv")
    assert result.exit_code == 0, result.stderr
    assert (workdir / "latest.csv").is_symlink() and os.readlink(workdir / "latest.csv") == str(target)
    assert target.read_bytes() == run("--format", "csv", *DAY_ARGS).stdout_bytes
    assert sorted(p.name for p in (workdir / "exports").iterdir()) == ["day.csv"]


def test_output_to_dev_null_leaves_the_device(configured):
    result = run("--format", "ndjson", *DAY_ARGS, "--output", "/dev/null")
    assert result.exit_code == 0, result.stderr
    assert "to /dev/null" in result.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISCHR(os.lstat("/dev/null").st_mode)
