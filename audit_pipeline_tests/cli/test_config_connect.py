"""`audit-pipeline config check --connect`: every part the configuration names is reached, one line each,
naming the setting to fix; and plain `config check` shows the database URL with only its password masked."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import sql
from sqlalchemy.engine import make_url

from audit_pipeline.cli.app import main
from audit_pipeline_tests.conftest import PgDatabase, free_port
from audit_pipeline_tests.standins.datadog import DatadogIntake
from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn
from audit_pipeline_tests.standins.splunk import SplunkHec
from audit_pipeline_tests.standins.webhook import WebhookReceiver

PASSWORD = "Pa55-word-that-must-not-show"


def _check(workdir: Path, yaml_text: str, *args: str, **env: str) -> Result:
    (workdir / "audit_pipeline.yaml").write_text(yaml_text, encoding="utf-8")
    return CliRunner().invoke(main, ["config", "check", *args], env=env, catch_exceptions=False)


def _lines(result: Result, status: str, what: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith(status) and what in line]


@pytest.fixture
def role_with_password(pg: PgDatabase):
    """A login role with a password and SELECT on the table, and its URL."""
    role = f"{pg.name}_pw"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(PASSWORD)))
        conn.execute(sql.SQL("GRANT SELECT ON audit_logs TO {}").format(sql.Identifier(role)))
    url = make_url(pg.url).set(username=role, password=PASSWORD).render_as_string(hide_password=False)
    yield url
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_without_connect_the_database_url_shows_all_but_its_password(workdir, role_with_password):
    result = _check(workdir, "source:\n  database_url: ${DB}\n", DB=role_with_password)
    assert result.exit_code == 0, result.stderr
    shown = make_url(role_with_password)
    assert f"database_url: postgresql://{shown.username}:***@{shown.host}:{shown.port}/{shown.database}" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def test_a_role_that_does_not_exist_fails_on_one_line_naming_the_setting(workdir, pg):
    url = make_url(pg.url).set(username="nobody_by_that_name", password=PASSWORD).render_as_string(hide_password=False)
    result = _check(workdir, f"source:\n  database_url: {url}\nexport:\n  url: {workdir / 'out'}\n", "--connect")
    assert result.exit_code == 1, result.output
    failed = _lines(result, "FAIL", "source")
    assert len(failed) == 1, result.stdout
    assert 'role "nobody_by_that_name" does not exist' in failed[0] and "fix source.database_url" in failed[0]
    assert PASSWORD not in result.stdout + result.stderr
    # the other parts are still checked, each on its line
    assert _lines(result, "ok", "export store") and _lines(result, "ok", "state database")
    assert "1 failed" in result.stderr


def test_a_read_only_role_passes_and_is_told_what_it_cannot_see(workdir, pg, role_with_password):
    result = _check(workdir, f"source:\n  database_url: ${{DB}}\nexport:\n  url: {workdir / 'out'}\n", "--connect", DB=role_with_password)
    assert result.exit_code == 0, result.output
    assert any("may SELECT" in line for line in _lines(result, "ok", "source")), result.stdout
    warned = _lines(result, "warn", "source")
    assert any("pg_stat_activity" in line and "pg_read_all_stats" in line for line in warned), result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def test_a_role_without_select_on_the_table_fails(workdir, pg):
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(sql.SQL("REVOKE SELECT ON audit_logs FROM {}").format(sql.Identifier(pg.name + "_ro")))
    try:
        result = _check(workdir, f"source:\n  database_url: {pg.readonly_url}\nexport:\n  url: {workdir / 'out'}\n", "--connect")
    finally:
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT SELECT ON audit_logs TO {}").format(sql.Identifier(pg.name + "_ro")))
    assert result.exit_code == 1, result.output
    (failed,) = _lines(result, "FAIL", "source")
    assert "audit_logs" in failed and "GRANT SELECT" in failed


def test_a_missing_bucket_fails_and_an_existing_one_takes_and_loses_a_probe(workdir, s3_server):
    env = {"AUDIT_S3_ENDPOINT_URL": s3_server.endpoint_url}
    missing = _check(workdir, "export:\n  url: s3://no-such-bucket-for-audit/exports\n", "--connect", **env)
    assert missing.exit_code == 1, missing.output
    (failed,) = _lines(missing, "FAIL", "export store")
    assert "no-such-bucket-for-audit" in failed and "does not exist" in failed and "fix export.url" in failed

    bucket = s3_server.new_bucket()
    found = _check(workdir, f"export:\n  url: s3://{bucket}/exports\n", "--connect", **env)
    assert found.exit_code == 0, found.output
    (line,) = _lines(found, "ok", "export store")
    assert "wrote and deleted a probe object" in line and "SSE AES256 accepted" in line
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_state_database_that_cannot_be_reached_fails(workdir):
    port = free_port()
    result = _check(workdir, f"state_url: postgresql://state:{PASSWORD}@127.0.0.1:{port}/state\n", "--connect")
    assert result.exit_code == 1, result.output
    (failed,) = _lines(result, "FAIL", "state database")
    assert "fix state_url" in failed and PASSWORD not in result.stdout + result.stderr


def test_each_sink_health_endpoint_is_asked_with_its_credentials(workdir):
    es_key = "es-api-key-0123456789"
    with (
        ElasticsearchStandIn(api_key=es_key) as es,
        SplunkHec() as splunk,
        DatadogIntake() as datadog,
        WebhookReceiver(secret="whook-secret-1234") as hook,
    ):
        dead = f"http://127.0.0.1:{free_port()}/hook"
        config = (
            f"export:\n  url: {workdir / 'out'}\nsinks:\n"
            f"  elasticsearch:\n    url: {es.url}\n    api_key: ${{ES_KEY}}\n"
            f"  splunk:\n    hec_url: {splunk.url}\n    hec_token: ${{HEC}}\n"
            f"  datadog:\n    url: {datadog.intake_url}\n    api_key: ${{DD}}\n"
            f"  webhooks:\n    - {{name: siem, url: '{hook.endpoint}', secret: whook-secret-1234}}\n"
            f"    - {{name: gone-away, url: '{dead}', secret: whook-secret-1234}}\n"
        )
        good = _check(workdir, config, "--connect", ES_KEY=es_key, HEC=splunk.token, DD=datadog.api_key)
        assert good.exit_code == 1, good.output  # only the webhook nobody listens for
        assert any("audit-standin" in line for line in _lines(good, "ok", "sink elasticsearch")), good.stdout
        assert any("HEC is healthy" in line for line in _lines(good, "ok", "sink splunk")), good.stdout
        assert any("token accepted" in line for line in _lines(good, "ok", "sink splunk")), good.stdout
        assert any("API key valid" in line for line in _lines(good, "ok", "sink datadog")), good.stdout
        assert _lines(good, "ok", "sink webhook:siem"), good.stdout
        (refused,) = _lines(good, "FAIL", "sink webhook:gone-away")
        assert "connection refused" in refused and "fix sinks.webhooks[1].url" in refused
        assert not hook.deliveries and not splunk.events and not datadog.logs  # nothing was sent as an event

        bad = _check(workdir, config, "--connect", ES_KEY="wrong-es-key-000", HEC="00000000-0000-0000-0000-000000000000", DD="wrong-dd-key-000")
        assert bad.exit_code == 1
        (es_line,) = _lines(bad, "FAIL", "sink elasticsearch")
        assert "401" in es_line and "fix sinks.elasticsearch.api_key" in es_line
        (hec_line,) = _lines(bad, "FAIL", "sink splunk")
        assert "refused the HEC token" in hec_line and "fix sinks.splunk.hec_token" in hec_line
        (dd_line,) = _lines(bad, "FAIL", "sink datadog")
        assert "not valid" in dd_line and "fix sinks.datadog.api_key" in dd_line
        for secret in ("wrong-es-key-000", "wrong-dd-key-000", es_key, datadog.api_key):
            assert secret not in bad.stdout + bad.stderr + good.stdout + good.stderr


def test_the_configuration_page_shows_every_default_as_a_value():
    from audit_pipeline.config.reference_docs import reference_markdown

    page = reference_markdown()
    assert "<lambda>" not in page and "computed (" not in page
    assert '| `events` | list of text | `["audit.*"]` |' in page
