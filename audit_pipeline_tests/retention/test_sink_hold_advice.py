"""Issue 27 (5): a sink that delivered a day is not blamed for it, and the advice names settings that exist.

A real ``forward --once`` to a stand-in webhook receiver (Standard Webhooks signatures checked)
leaves the sink's position on the last event of the newest day: that day is delivered, so
retention deletes it like the others.  A sink that really lags is named with the key that
disables it, and following that advice loads and releases the rows.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from click.testing import CliRunner

from audit_pipeline.cli.app import main
from audit_pipeline.config.settings import load_settings
from audit_pipeline.forwarding.positions import PositionStore
from audit_pipeline.retention.run import run_retention
from audit_pipeline_tests.conftest import PgDatabase
from audit_pipeline_tests.retention.support import day_range, export_days, fill_days, settings_for
from audit_pipeline_tests.standins.webhook import WebhookReceiver

D = dt.date
DAYS = day_range(D(2024, 1, 1), D(2024, 1, 3))
TODAY = D(2024, 5, 20)
SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="


def _webhook(url: str, **extra: object) -> dict[str, object]:
    return {"webhooks": [{"name": "siem-archive", "url": url, "secret": SECRET, "start": "earliest", **extra}]}


def test_a_sink_positioned_on_the_days_last_event_has_delivered_it(pg: PgDatabase, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[-1], per_day=5)
    with WebhookReceiver(secret=SECRET) as receiver:
        settings = settings_for(tmp_path, pg, {"database": "30d"}, sinks=_webhook(receiver.endpoint), forwarding={"settle_seconds": 1})
        forwarded = CliRunner().invoke(main, ["--config", str(tmp_path / "audit_pipeline.yaml"), "forward", "webhook:siem-archive", "--once"])
        assert forwarded.exit_code == 0, forwarded.output
        assert len({e["id"] for e in receiver.events}) == 15
    positions = PositionStore.from_settings(settings)
    state = positions.get("webhook:siem-archive")
    positions.close()
    last = pg.fetch("SELECT created_at, id FROM audit_logs ORDER BY created_at DESC, id DESC LIMIT 1")[0]
    assert state is not None and state.position is not None and (state.position.created_at, state.position.id) == (last[0], last[1])
    export_days(settings, DAYS)

    warnings: list[str] = []
    dry = run_retention(settings, today=TODAY, dry_run=True, warn=warnings.append)
    assert dry.plan is not None
    assert [(d.day, d.action) for d in dry.plan.database] == [(day, "delete") for day in DAYS], [d.reason for d in dry.plan.database]
    assert not any("has not delivered" in w for w in warnings), warnings
    real = run_retention(settings, today=TODAY)
    assert real.figures().database_rows == 15 and pg.fetch("SELECT count(*) FROM audit_logs")[0][0] == 0


def test_a_lagging_sink_is_named_with_the_key_that_disables_it(pg: PgDatabase, tmp_path: Path) -> None:
    fill_days(pg, DAYS[0], DAYS[-1], per_day=5)
    config = tmp_path / "audit_pipeline.yaml"
    settings = settings_for(tmp_path, pg, {"database": "30d"}, sinks=_webhook("http://127.0.0.1:9/hook"))
    export_days(settings, DAYS)

    warnings: list[str] = []
    held = run_retention(settings, today=TODAY, dry_run=True, warn=warnings.append)
    assert held.plan is not None and not held.plan.days_to_delete
    advice = next(w for w in warnings if "has not delivered" in w)
    assert advice.startswith("sink webhook:siem-archive has not delivered 15 rows of 3 day(s) past retention.database (2024-01-01 to 2024-01-03")
    assert advice.endswith(
        "Check the sink (audit-pipeline forward webhook:siem-archive --once), or disable it (sinks.webhooks[0].enabled: false) if it is gone for good"
    )
    assert "sinks.webhook.enabled" not in advice

    # Following the advice as written: the key exists, the file loads, and the sink no longer holds the rows.
    document = yaml.safe_load(config.read_text())
    document["sinks"]["webhooks"][0]["enabled"] = False
    config.write_text(yaml.safe_dump(document))
    disabled = load_settings(config, env={})
    assert run_retention(disabled, today=TODAY).figures().database_rows == 15
