"""``rechain`` and ``relink`` go through the export's recipe: they wait for a running export of the same day.

The test holds the day's lock as a running export does (PostgreSQL state database, another
connection), starts the command in its own process, sees it asking for the lock in
``pg_stat_activity``, checks that it has neither finished nor changed the store while the lock
is held, then releases the lock and lets it finish.  Nothing is timed: the only deadlines
are hang guards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import yaml

from audit_pipeline.config.settings import Settings, load_settings
from audit_pipeline.core.layout import manifest_key
from audit_pipeline.exports.daylock import day_lock, days_lock
from audit_pipeline.integrity.errors import IntegrityError
from audit_pipeline.integrity.manifest import Manifest
from audit_pipeline.recipes.sealed_export import export_sealed_day
from audit_pipeline.sources.registry import open_source
from audit_pipeline.sources.synthetic import generate_events
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.helpers import tree
from audit_pipeline_tests.integrity.support import DAYS, insert_days, new_signer, verify, write_private_key

D1, D2, D3 = DAYS
CLI = str(Path(sys.executable).parent / "audit-pipeline")


def _settings(pg, tmp_path: Path) -> Path:
    key = write_private_key(new_signer(), tmp_path / "manifest.pem")
    config = {
        "source": {"database_url": pg.readonly_url},
        "export": {"url": str(tmp_path / "exports")},
        "state_url": pg.url,  # PostgreSQL: the lock is an advisory lock the test can see waited for
        "integrity": {"private_key_file": str(key), "checkpoint_rows": 100},
    }
    path = tmp_path / "audit_pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _exported(pg, tmp_path: Path) -> tuple[Path, Settings, ObjectStore]:
    insert_days(pg, {D1: 90, D2: 80, D3: 70})
    config = _settings(pg, tmp_path)
    settings = load_settings(config)
    store = ObjectStore.from_settings(settings.export)
    for day in DAYS:
        export_sealed_day(settings, store, day, lambda: open_source(settings))
    return config, settings, store


def _start(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_") or k.startswith("AUDIT_TEST_")}
    return subprocess.Popen([CLI, "--config", str(config), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=config.parent)


def _waiting_for_the_lock(pg, command: subprocess.Popen[str]) -> None:
    """Return once the command's lock connection asks for a day lock it cannot get (the holder keeps it)."""
    with psycopg.connect(pg.url, autocommit=True) as conn:
        holder = conn.execute(
            "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchall()
        assert len(holder) == 1, holder  # the test's own lock: one connection holds it
        for _ in range(600):  # a hang guard, not an expectation: each round waits for the command's next try
            if command.poll() is not None:
                pytest.fail(f"the command finished while the day was locked: {command.communicate()[0]}")
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s"
                " AND application_name LIKE 'audit_pipeline export %%' AND query LIKE '%%pg_try_advisory_lock%%'",
                (holder[0][0],),
            ).fetchone()
            if waiting and waiting[0] >= 1:
                return
            conn.execute("SELECT pg_sleep(0.2)")
        pytest.fail("the command never asked for the day lock")


@pytest.mark.parametrize("command", ["rechain", "relink"])
def test_rechain_and_relink_wait_for_a_running_export_of_the_same_day(pg, tmp_path: Path, workdir: Path, command: str) -> None:
    config, settings, store = _exported(pg, tmp_path)
    pg.insert(generate_events(D2, 3, seed=99))  # late rows: D2 must be rechained
    before = {name: (tmp_path / "exports" / name).read_bytes() for name in tree(tmp_path / "exports")}
    args = ["rechain", "--from", str(D2), "--reason", "late rows from the replica"] if command == "rechain" else ["relink", "--from", str(D1)]

    with day_lock(settings, D2, wait_seconds=5):  # an export of D2 is running
        running = _start(config, *args)
        _waiting_for_the_lock(pg, running)
        assert running.poll() is None  # still waiting, and nothing of the store changed
        assert {name: (tmp_path / "exports" / name).read_bytes() for name in tree(tmp_path / "exports")} == before
    output, _ = running.communicate(timeout=300)  # the export finished: the command goes on

    assert running.returncode == 0, output
    if command == "rechain":
        assert f"{D2}: manifest rechained" in output and f"{D3}: relinked to {D2}" in output
        rechained = Manifest.from_bytes(store.read_bytes(manifest_key(D2)))
        assert rechained.history[-1].action == "rechained" and rechained.rows == 83
    else:
        assert f"every day from {D1} on is already linked" in output
    assert all(report.ok for report in verify(store).values())


def test_relink_locks_a_range_of_days_and_an_export_of_one_of_them_waits_for_it(pg, tmp_path: Path, workdir: Path) -> None:
    """The other way round: a multi-day holder (as ``relink`` takes) keeps an export of one of its days out."""
    config, settings, _store = _exported(pg, tmp_path)
    with days_lock(settings, [D1, D2, D3], wait_seconds=5):
        running = _start(config, "rechain", "--from", str(D3), "--reason", "checking the lock")
        _waiting_for_the_lock(pg, running)
        assert running.poll() is None
    output, _ = running.communicate(timeout=300)
    assert running.returncode == 0 and f"{D3}: manifest unchanged" in output, output


def test_the_recipe_refuses_a_day_whose_events_changed_without_a_reason(pg, tmp_path: Path, workdir: Path) -> None:
    _config, settings, store = _exported(pg, tmp_path)
    pg.insert(generate_events(D1, 2, seed=5))
    with pytest.raises(IntegrityError, match=rf"{D1} was already exported with different events"):
        export_sealed_day(settings, store, D1, lambda: open_source(settings))
    assert Manifest.from_bytes(store.read_bytes(manifest_key(D1))).rows == 90  # the refusal left the day as it was
