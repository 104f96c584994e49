"""No secret, not even 8 characters of one, reaches anything the pipeline writes.

A distinct 32-character secret goes into every secret-bearing setting; every failure path
is driven (401, 403, 422 and 500 answers that echo the request's headers and URL, an
unreachable host, a TLS failure, an unreachable database, a YAML syntax error and a key
given twice), through the command line and through Dagster runs; then every byte written
(stdout, stderr, logs, Dagster event storage and compute logs, dead letters, manifests,
exports, the state database) is searched for every 8-character piece of every secret.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import string
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from audit_pipeline.config.settings import load_settings
from audit_pipeline.defs.forwarding import build_forwarding_definitions
from audit_pipeline.defs.resources import AuditPipelineResource
from audit_pipeline_tests.sinks.events import recent, synthetic
from audit_pipeline_tests.standins.receiver import Answer, Receiver, Request

CLI = str(Path(sys.executable).parent / "audit-pipeline")
PIECE = 8
_ALPHABET = string.ascii_letters + string.digits
_rng = random.Random(20261202)
SECRETS = {
    name: "".join(_rng.choice(_ALPHABET) for _ in range(32))
    for name in (
        "PG_PASSWORD",
        "RETENTION_PASSWORD",
        "STATE_PASSWORD",
        "DD_API_KEY",
        "SPLUNK_TOKEN",
        "HOOK_SECRET",
        "HOOK_HEADER",
        "URL_TOKEN",
        "TLS_HOOK_SECRET",
        "ES_API_KEY",
        "HMAC_KEY",
        "HJ_SECRET_KEY",
        "INLINE_YAML_SECRET",
    )
}


class EchoServer(Receiver):
    """Answers ``/s<status>/...`` with that status and a body echoing the request line, headers and body."""

    def handle(self, request: Request) -> Answer:
        status = int(request.path.split("/")[1][1:])
        query = "&".join(f"{k}={v[0]}" for k, v in request.query.items())
        echoed = {"url": f"{self.url}{request.path}?{query}", "headers": request.headers, "body": request.body[:300].decode("utf-8", "replace")}
        return Answer(status, json.dumps({"error": "echo", "code": 4, "request": echoed}).encode(), {"Content-Type": "application/json"})


def _pieces(secret: str) -> list[str]:
    return [secret[i : i + PIECE] for i in range(len(secret) - PIECE + 1)]


def _with_password(url: str, password: str, user: str | None = None) -> str:
    parsed = make_url(url).set(password=password)
    if user:
        parsed = parsed.set(username=user)
    return parsed.render_as_string(hide_password=False)


def _run(args: list[str], cwd: Path, env: dict[str, str], outputs: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    outputs += [f"$ {' '.join(args)} -> {done.returncode}", done.stdout, done.stderr]
    return done


def _state_dump(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'audit_logs'")]
        return "\n".join(f"{t}: {conn.execute(f'SELECT * FROM {t}').fetchall()!r}" for t in tables)


@pytest.mark.slow  # about twenty command-line start-ups and four Dagster runs
def test_no_piece_of_any_secret_is_written_anywhere(pg, workdir, capfd):
    now = dt.datetime.now(dt.UTC)
    pg.insert(recent(40, now - dt.timedelta(minutes=20)))
    pg.insert(synthetic(60, day=dt.date(2024, 1, 15), seed=3))
    home = workdir / "dagster_home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_")) or k.startswith("AUDIT_TEST_")}
    env.update(SECRETS, DAGSTER_HOME=str(home), PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    outputs: list[str] = []

    with EchoServer() as echo:
        base = echo.url
        config = {
            "source": {"database_url": "${AUDIT_SOURCE_URL}"},
            "export": {"url": str(workdir / "exports")},
            "state_url": "${AUDIT_STATE_DB}",
            "forwarding": {"settle_seconds": 0, "watch_open_transactions": False, "retry": {"initial_seconds": 0.05, "max_seconds": 0.1, "give_up_seconds": 1}},
            "sinks": {
                "datadog": {"api_key": "${DD_API_KEY}", "url": f"{base}/s500/api/v2/logs", "start": "earliest"},
                "splunk": {"hec_url": f"{base}/s401", "hec_token": "${SPLUNK_TOKEN}", "start": "earliest"},
                "elasticsearch": {"url": "http://127.0.0.1:1", "api_key": "${ES_API_KEY}", "start": "earliest"},
                "webhooks": [
                    {
                        "name": "rejecting",
                        "url": f"{base}/s422/ingest?token=${{URL_TOKEN}}",
                        "secret": "${HOOK_SECRET}",
                        "headers": {"Authorization": "Bearer ${HOOK_HEADER}"},
                        "start": "earliest",
                    },
                    {"name": "forbidden", "url": f"{base}/s403/ingest?token=${{URL_TOKEN}}", "secret": "${HOOK_SECRET}", "start": "earliest"},
                    {
                        "name": "tls",
                        "url": f"{base.replace('http://', 'https://')}/s200/x?api_key=${{URL_TOKEN}}",
                        "secret": "${TLS_HOOK_SECRET}",
                        "start": "earliest",
                    },
                ],
            },
            "integrity": {"hmac_key": "${HMAC_KEY}"},
            "retention": {"database_url": "${AUDIT_RETENTION_URL}"},
        }
        path = workdir / "audit_pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        env.update(
            AUDIT_SOURCE_URL=_with_password(pg.readonly_url, SECRETS["PG_PASSWORD"]),
            AUDIT_STATE_DB=_with_password(pg.url, SECRETS["STATE_PASSWORD"]),
            AUDIT_RETENTION_URL=_with_password(pg.url, SECRETS["RETENTION_PASSWORD"]),
        )

        assert _run(["config", "check"], workdir, env, outputs).returncode == 0, outputs[-1]
        assert _run(["export-day", "2024-01-15"], workdir, env, outputs).returncode == 0, outputs[-1]
        assert _run(["verify"], workdir, env, outputs).returncode == 0, outputs[-2:]
        for sink in ("webhook:rejecting", "webhook:forbidden", "webhook:tls", "datadog", "splunk", "elasticsearch"):
            done = _run(["forward", sink, "--once"], workdir, env, outputs)
            assert done.returncode in (1, 3), (sink, done.stdout, done.stderr)
        assert "***" in "".join(outputs)  # the echoed secrets were there, and masked
        sent = json.dumps([[r.path, r.query, r.headers] for r in echo.requests])
        for name in ("DD_API_KEY", "SPLUNK_TOKEN", "HOOK_HEADER", "URL_TOKEN"):
            assert SECRETS[name] in sent, f"{name} never reached the echoing server, so its masking was not tested"
        _run(["deadletters", "list", "webhook:rejecting"], workdir, env, outputs)
        _run(["deadletters", "replay", "webhook:rejecting"], workdir, env, outputs)
        assert list((workdir / "exports" / "deadletters").rglob("*.ndjson")), "the 422 answers were dead-lettered"

        # The same failures as Dagster runs, recorded in the instance's event storage and compute logs.
        os.environ.update({k: env[k] for k in (*SECRETS, "AUDIT_SOURCE_URL", "AUDIT_STATE_DB", "AUDIT_RETENTION_URL")})
        try:
            settings = load_settings(path)
            resource = AuditPipelineResource(config_path=str(path))
            defs = dg.Definitions.merge(build_forwarding_definitions(settings), dg.Definitions(resources={"audit": resource}))
            (home / "in_process").mkdir()
            with dg.instance_for_test(temp_dir=str(home / "in_process")) as instance:
                for job in ("forward_webhook_rejecting_job", "forward_webhook_forbidden_job", "forward_datadog_job", "forward_splunk_job"):
                    op = job.removesuffix("_job")
                    defs.resolve_job_def(job).execute_in_process(
                        run_config={"ops": {op: {"config": {"horizon": dt.datetime.now(dt.UTC).isoformat()}}}},
                        instance=instance,
                        raise_on_error=False,
                    )
        finally:
            for name in (*SECRETS, "AUDIT_SOURCE_URL", "AUDIT_STATE_DB", "AUDIT_RETENTION_URL"):
                os.environ.pop(name, None)

    # Configuration mistakes around secrets: an inline secret on a broken line, a key given twice.
    broken = workdir / "broken.yaml"
    broken.write_text(f'sinks:\n  datadog:\n    api_key: "{SECRETS["INLINE_YAML_SECRET"]}\n    site: datadoghq.com\n', encoding="utf-8")
    assert _run(["--config", str(broken), "config", "check"], workdir, env, outputs).returncode == 2
    twice = workdir / "twice.yaml"
    twice.write_text(f"sinks:\n  splunk:\n    hec_token: {SECRETS['INLINE_YAML_SECRET']}\n    hec_token: {SECRETS['INLINE_YAML_SECRET']}\n", encoding="utf-8")
    assert _run(["--config", str(twice), "config", "check"], workdir, env, outputs).returncode == 2
    # The HelloJohn API source answering 401 with our key echoed, and an unreachable database.
    with EchoServer() as api:
        hosted = workdir / "hosted.yaml"
        hosted.write_text(f"source:\n  type: hellojohn_api\n  base_url: {api.url}/s401\n  secret_key: ${{HJ_SECRET_KEY}}\n", encoding="utf-8")
        assert _run(["--config", str(hosted), "export-day", "2024-01-15"], workdir, env, outputs).returncode in (1, 2)
        assert _run(["--config", str(hosted), "config", "check"], workdir, env, outputs).returncode == 0
    down = {**env, "AUDIT_SOURCE_URL": f"postgresql://reader:{SECRETS['PG_PASSWORD']}@127.0.0.1:1/audit"}
    assert _run(["export-day", "2024-01-16"], workdir, down, outputs).returncode == 1

    captured = capfd.readouterr()
    written: dict[str, str] = {"command output": "\n".join(outputs), "test process stdout/stderr": captured.out + captured.err}
    written["state database"] = _state_dump(pg.url)
    for file in workdir.rglob("*"):
        if file.is_file():
            written[str(file.relative_to(workdir))] = file.read_bytes().decode("latin-1")
    assert any("dagster_home" in name and name.endswith(".db") for name in written), "Dagster's event storage was searched"
    inputs = {"audit_pipeline.yaml", "broken.yaml", "twice.yaml", "hosted.yaml"}  # what the test itself wrote
    assert SECRETS["INLINE_YAML_SECRET"][:PIECE] in written["broken.yaml"]  # the search does find a piece where one is
    leaks = [
        f"{name}: {secret_name}[{secret.index(piece)}:+{PIECE}]"
        for secret_name, secret in SECRETS.items()
        for piece in _pieces(secret)
        for name, text in written.items()
        if name not in inputs and piece in text
    ]
    assert not leaks, f"pieces of secrets were written: {sorted(set(leaks))[:20]}"
