"""`audit-pipeline config check|schema|docs`: every bad configuration is caught before any run, in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.reference_docs import reference_markdown

REPO = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "audit-pipeline")
PG = "source:\n  database_url: postgresql://reader:pw@127.0.0.1:1/audit\n"

# (name, YAML bytes, extra environment, the one line expected on stderr)
BAD_CONFIGURATIONS: list[tuple[str, bytes, dict[str, str], str]] = [
    ("unknown section", b"retenion:\n  database: 7d\n", {}, "retenion: unknown key"),
    ("typo inside a section", b"retention:\n  legal_hld: true\n", {}, "retention.legal_hld: unknown key"),
    (
        "duplicate section",
        b"retention:\n  legal_hold: true\nexport:\n  gzip: true\nretention:\n  database: 7d\n",
        {},
        "key 'retention' is given twice, at lines 1 and 5",
    ),
    (
        "sink start not a calendar day",
        b"sinks:\n  datadog:\n    api_key: abc\n    start: 2024-13-45\n",
        {},
        "sinks.datadog.start: start must be 'earliest', 'now' or a day",
    ),
    ("partition start not a day", b"export:\n  partition_start: 2024-02-30\n", {}, "export.partition_start: must be a day as YYYY-MM-DD, got '2024-02-30'"),
    ("duration without unit", b"retention:\n  database: 7 days\n", {}, "retention.database: '7 days' is not a duration"),
    ("negative duration", b"retention:\n  exports:\n    csv: -5d\n", {}, "retention.exports.csv: '-5d' is negative"),
    ("non-UTF-8 file", "sinks:\n  splunk:\n    source: caf\xe9\n".encode("latin-1"), {}, "is not UTF-8 text: byte 0xe9 at line 3"),
    ("YAML syntax", b'sinks:\n  datadog:\n    api_key: "INLINE-SECRET-0042\n', {}, "invalid YAML at line"),
    (
        "unset variable",
        b"sinks:\n  datadog:\n    api_key: ${NOPE_NOT_SET_VAR}\n",
        {},
        "refers to ${NOPE_NOT_SET_VAR}, but the environment variable NOPE_NOT_SET_VAR is not set",
    ),
    ("unknown source type", b"source:\n  type: mysql\n", {}, "source: type must be one of postgres, hellojohn_api, demo"),
    ("postgres without a URL", b"source:\n  table: audit_logs\n", {}, "source.database_url: is required for source type postgres"),
    ("API source without a key", b"source:\n  type: hellojohn_api\n  base_url: https://auth.example.com\n", {}, "source.secret_key: is required"),
    ("unknown sink", b"sinks:\n  kafka:\n    url: x\n", {}, "sinks.kafka: unknown sink"),
    ("bad environment value", b"", {"AUDIT_PARTITION_START": "notadate"}, "AUDIT_PARTITION_START (export.partition_start): must be a day as YYYY-MM-DD"),
    ("bad boolean from the environment", b"", {"AUDIT_EXPORT_GZIP": "maybe"}, "AUDIT_EXPORT_GZIP (export.gzip):"),
    (
        "two webhooks, one name",
        b"sinks:\n  webhooks:\n    - {name: a, url: 'https://x', secret: s1}\n    - {name: a, url: 'https://y', secret: s2}\n",
        {},
        "two webhooks are named 'a'",
    ),
    (
        "retention without a deleting role",
        PG.encode() + b"retention:\n  database: 30d\n",
        {},
        "retention.database is 30d, so retention needs a connection that may delete rows",
    ),
    ("index retention without the sink", b"retention:\n  elasticsearch: 30d\n", {}, "there is no sinks.elasticsearch section"),
    ("signing key file missing", b"integrity:\n  private_key_file: /nonexistent/key.pem\n", {}, "integrity.private_key_file"),
    ("bad executor", b"", {"AUDIT_DAGSTER_EXECUTOR": "threads"}, "AUDIT_DAGSTER_EXECUTOR='threads'"),
    ("state database that is not a URL", b"state_url: .audit/state.db\n", {}, "state_url: must be a SQLAlchemy database URL"),
]


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_")) or k.startswith("AUDIT_TEST_")}
    return subprocess.run([CLI, *args], cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("name", "content", "env", "expected"), BAD_CONFIGURATIONS, ids=[c[0] for c in BAD_CONFIGURATIONS])
def test_config_check_reports_each_bad_configuration_in_one_line(workdir, monkeypatch, name, content, env, expected):
    (workdir / "audit_pipeline.yaml").write_bytes(content)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(main, ["config", "check"])
    assert result.exit_code == 2, (name, result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "INLINE-SECRET" not in result.stderr
    assert result.stdout == ""


def test_the_command_line_reports_a_bad_configuration_without_a_traceback(workdir):
    (workdir / "audit_pipeline.yaml").write_bytes(BAD_CONFIGURATIONS[3][1])
    for args in (["config", "check"], ["export-day", "2024-01-15"]):
        done = _run(args, workdir)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: audit_pipeline.yaml: ") and BAD_CONFIGURATIONS[3][3] in lines[0], lines


def test_every_problem_is_reported_at_once(workdir):
    (workdir / "audit_pipeline.yaml").write_text(
        "source:\n  tabel: x\nexport:\n  partition_start: 2024-13-45\nsinks:\n  kafka: {}\nretention:\n  database: 7 days\n", encoding="utf-8"
    )
    done = _run(["config", "check"], workdir)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    for key in ("source.tabel", "source.database_url", "export.partition_start", "sinks.kafka", "retention.database"):
        assert sum(key + ":" in line for line in lines) == 1, (key, lines)


def test_a_good_configuration_is_printed_resolved_with_secrets_masked(workdir):
    secret = "SPLUNKTOKEN-0123456789abcdefghijkl"
    (workdir / "audit_pipeline.yaml").write_text(
        "export:\n  partition_start: 2024-03-01\nsinks:\n  splunk:\n    hec_url: https://splunk.example:8088\n    hec_token: ${HEC}\n    start: 2024-03-02\n"
        "state_url: postgresql://state:STATEPASSWORD-xyz987@db.example/state\nretention:\n  exports: 90d\n",
        encoding="utf-8",
    )
    done = _run(["config", "check"], workdir, HEC=secret)
    assert done.returncode == 0, done.stderr
    assert "hec_token: '***'" in done.stdout and secret[:8] not in done.stdout + done.stderr
    assert "STATEPASSWORD" not in done.stdout and "postgresql://state:***@db.example/state" in done.stdout
    assert "partition_start: '2024-03-01'" in done.stdout and "csv: 90d" in done.stdout
    assert "start: '2024-03-02'" in done.stdout


def test_schema_covers_every_section(workdir):
    done = _run(["config", "schema"], workdir)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert set(schema["properties"]) >= {"source", "export", "state_url", "forwarding", "sinks", "retention", "integrity"}
    assert schema["properties"]["source"]["discriminator"]["propertyName"] == "type"
    assert schema["additionalProperties"] is False


def test_the_configuration_page_is_generated_from_the_model():
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == reference_markdown(), "docs/configuration.md drifted from the settings model: run `audit-pipeline config docs --write docs/configuration.md`"
