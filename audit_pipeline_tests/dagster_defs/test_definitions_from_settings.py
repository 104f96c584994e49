"""The code location is built from the loaded settings, and a broken configuration fails its load in one clear line."""

from __future__ import annotations

import datetime as dt

import pytest

from audit_pipeline.config.settings import load_settings
from audit_pipeline.definitions import load_definitions
from audit_pipeline.defs.build import build_definitions
from audit_pipeline.defs.component import ConfigurationNotLoaded


def test_partitions_start_at_the_yaml_partition_start_and_kinds_name_the_source(workdir):
    (workdir / "audit_pipeline.yaml").write_text("export:\n  partition_start: 2024-03-01\n", encoding="utf-8")
    defs = build_definitions(load_settings())
    job = defs.resolve_job_def("daily_export_job")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys()[0] == "2024-03-01"
    table = next(spec for spec in defs.resolve_all_asset_specs() if spec.key.to_user_string() == "audit_logs")
    assert table.kinds == {"sqlite"}  # no source configured: the demo database, not "postgres"


def test_a_broken_configuration_fails_the_load_with_its_reason(workdir, monkeypatch):
    (workdir / "audit_pipeline.yaml").write_text("sinks:\n  datadog:\n    api_key: abc\n    start: 2024-13-45\n", encoding="utf-8")
    with pytest.raises(ConfigurationNotLoaded) as caught:
        load_definitions()
    message = str(caught.value)
    assert "sinks.datadog.start" in message and "2024-13-45" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chain of inner tracebacks


def test_a_bad_environment_value_names_the_variable(workdir, monkeypatch):
    monkeypatch.setenv("AUDIT_PARTITION_START", "notadate")
    with pytest.raises(ConfigurationNotLoaded, match=r"AUDIT_PARTITION_START \(export.partition_start\): must be a day"):
        load_definitions()
    monkeypatch.setenv("AUDIT_PARTITION_START", (dt.date.today() - dt.timedelta(days=3)).isoformat())
    assert load_definitions().resolve_job_def("daily_export_job") is not None


def test_loading_the_code_location_freezes_what_it_loaded(tmp_path):
    # Full collections afterwards do not walk Dagster's and the definitions' objects again; objects made
    # later are still collected (a cycle created after the load is freed by gc.collect()).
    import os
    import subprocess
    import sys

    probe = (
        "import gc, weakref\n"
        "import audit_pipeline.definitions\n"
        "frozen = gc.get_freeze_count()\n"
        "class Node: pass\n"
        "a, b = Node(), Node(); a.other, b.other = b, a\n"
        "ref = weakref.ref(a); del a, b\n"
        "gc.collect()\n"
        "print(frozen, ref() is None)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDIT_")}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    frozen, collected = done.stdout.split()
    assert int(frozen) > 50_000  # the loaded modules and definitions, not a handful
    assert collected == "True"
