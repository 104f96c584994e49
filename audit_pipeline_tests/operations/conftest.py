"""Fixtures for running the pipeline as a Dagster deployment: instances built from the shipped profiles."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from sqlalchemy.engine import make_url

from audit_pipeline_tests.conftest import ADMIN_URL

REPO = Path(__file__).resolve().parents[2]
PRODUCTION_PROFILE = REPO / "deploy" / "dagster.yaml"
LOCAL_PROFILE = REPO / "dagster.yaml"
HANDOFF_LAUNCHER = {"module": "audit_pipeline_tests.operations.handoff", "class": "HandOffRunLauncher"}


@dataclass
class DagsterDatabase:
    """An empty PostgreSQL database for Dagster's own storage, and the DAGSTER_PG_* variables that reach it."""

    name: str
    env: dict[str, str]


@pytest.fixture
def dagster_db() -> Iterator[DagsterDatabase]:
    name = f"dagster_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(ADMIN_URL)
    env = {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USERNAME": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": name,
    }
    yield DagsterDatabase(name, env)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def write_home(home: Path, profile: Path, **overrides: Any) -> Path:
    """A DAGSTER_HOME holding ``profile`` with some top-level sections replaced."""
    config = yaml.safe_load(profile.read_text())
    config.update(overrides)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


@pytest.fixture
def production_home(tmp_path: Path, dagster_db: DagsterDatabase, monkeypatch: pytest.MonkeyPatch) -> Path:
    """deploy/dagster.yaml against a fresh PostgreSQL database, runs handed to the test instead of Docker."""
    for key, value in dagster_db.env.items():
        monkeypatch.setenv(key, value)
    compute_logs = {
        "module": "dagster.core.storage.local_compute_log_manager",
        "class": "LocalComputeLogManager",
        "config": {"base_dir": str(tmp_path / "compute_logs")},
    }
    return write_home(tmp_path / "dagster_home", PRODUCTION_PROFILE, run_launcher=HANDOFF_LAUNCHER, compute_logs=compute_logs)
