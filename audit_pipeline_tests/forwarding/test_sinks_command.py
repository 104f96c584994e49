"""``audit-pipeline sinks list|seek|moves``: positions shown and moved on the real PostgreSQL and the
Elasticsearch stand-in; a move is recorded with who and why, and refused while a forwarder holds the sink."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from audit_pipeline.cli.app import main
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.forwarding.conftest import write_config
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

DAY = dt.date(2024, 1, 15)
NEXT = DAY + dt.timedelta(days=1)


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def _row(listing: Result, sink: str) -> list[str]:
    """The listing's row of ``sink``, split on the runs of spaces that separate its columns."""
    import re

    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["SINK", "POSITION", "LAG", "(OLDEST)", "DEAD", "LETTERS", "LEASE"], listing.stdout
    (line,) = [line for line in lines[1:] if line.startswith(sink + " ")]
    return re.split(r"\s{2,}", line)


@pytest.fixture
def forwarded(pg: PgDatabase, workdir: Path, es: ElasticsearchStandIn) -> tuple[Path, list[dict], list[dict]]:
    first, second = list(generate_events(DAY, 1_000)), list(generate_events(NEXT, 400))
    pg.insert(first + second)
    config = write_config(workdir / "audit_pipeline.yaml", database_url=pg.url, es_url=es.url, export_url=str(workdir / "exports"))
    done = _run(config, "forward", "elasticsearch", "--once")
    assert done.exit_code == 0 and "1,400 delivered" in done.stdout, done.output
    return config, first, second


def _store(workdir: Path) -> PositionStore:
    return PositionStore(f"sqlite:///{workdir}/.audit_pipeline/state.db")


def _last(events: list[dict]) -> dict:
    return max(events, key=lambda e: (e["created_at"], e["id"]))


def test_list_shows_position_lag_dead_letters_and_lease(forwarded, workdir):
    config, first, second = forwarded
    row = _row(_run(config, "sinks", "list"), "elasticsearch")
    last = _last(first + second)
    assert row[1].endswith(last["id"]) and row[1].startswith(NEXT.isoformat())
    assert row[2:] == ["up to date", "0", "free"]


def test_seek_to_a_day_resends_from_it_and_records_who_and_why(forwarded, workdir, es):
    config, first, second = forwarded
    moved = _run(config, "sinks", "seek", "elasticsearch", "--to", NEXT.isoformat(), "--reason", "the January index was restored empty", "--yes")
    assert moved.exit_code == 0, moved.output
    assert f"to {NEXT.isoformat()}T00:00:00Z" in moved.stdout and "the January index was restored empty" in moved.stdout

    row = _row(_run(config, "sinks", "list"), "elasticsearch")
    assert row[1] == f"{NEXT.isoformat()}T00:00:00Z" and row[2].startswith("400 (")

    again = _run(config, "forward", "elasticsearch", "--once")
    assert again.exit_code == 0 and "400 delivered" in again.stdout, again.output
    assert not es.duplicates()
    store = _store(workdir)
    # the re-sent day is counted once, the day before it keeps its count: retention's accounting stays exact
    assert store.delivered_count("elasticsearch", NEXT) == 400 and store.delivered_count("elasticsearch", DAY) == 1_000

    history = _run(config, "sinks", "moves", "elasticsearch")
    assert history.exit_code == 0
    (line,) = history.stdout.splitlines()[1:]
    assert "the January index was restored empty" in line and "@" in line and _last(first + second)["id"] in line


def test_seek_to_an_event_continues_after_it_and_to_now_skips_the_backlog(forwarded, workdir, pg):
    config, first, second = forwarded
    ordered = sorted(first + second, key=lambda e: (e["created_at"], e["id"]))
    pivot = ordered[99]
    moved = _run(config, "sinks", "seek", "elasticsearch", "--to", pivot["id"], "--reason", "re-send after the 100th", "--yes")
    assert moved.exit_code == 0, moved.output
    assert _store(workdir).get("elasticsearch").position.id == pivot["id"]
    assert _row(_run(config, "sinks", "list"), "elasticsearch")[2].startswith(f"{len(ordered) - 100:,} (")

    skipped = _run(config, "sinks", "seek", "elasticsearch", "--to", "now", "--reason", "start over from today", "--yes")
    assert skipped.exit_code == 0, skipped.output
    assert _row(_run(config, "sinks", "list"), "elasticsearch")[2] == "up to date"


def test_seek_is_refused_while_a_forwarder_holds_the_sink(forwarded, workdir):
    config = forwarded[0]
    store = _store(workdir)
    before = store.get("elasticsearch").position
    assert store.acquire("elasticsearch", "ingest-7:4242:abcd", 60) is None
    refused = _run(config, "sinks", "seek", "elasticsearch", "--to", "earliest", "--reason", "rewind", "--yes")
    assert refused.exit_code == 1
    assert "being forwarded by ingest-7:4242:abcd" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert store.get("elasticsearch").position == before
    assert "ingest-7:4242:abcd" in _row(_run(config, "sinks", "list"), "elasticsearch")[4]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--to", "earliest", "--reason", "rewind"], "add --yes"),
        (["--to", "no-such-event-id", "--reason", "x", "--yes"], "neither earliest, now, a day"),
        (["--to", "earliest", "--reason", "  ", "--yes"], "--reason must say why"),
    ],
)
def test_seek_mistakes_are_one_line_and_move_nothing(forwarded, workdir, args, expected):
    config, _, _ = forwarded
    before = _store(workdir).get("elasticsearch").position
    result = _run(config, "sinks", "seek", "elasticsearch", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _store(workdir).get("elasticsearch").position == before
    unknown = _run(config, "sinks", "seek", "kafka", "--to", "now", "--reason", "x", "--yes")
    assert unknown.exit_code == 2 and "no sink named 'kafka'" in unknown.stderr
