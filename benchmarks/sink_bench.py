"""Sink payload benchmark: the Datadog and Splunk sinks against a naive per-event JSON encoder.

Our sinks splice each event's canonical NDJSON line (encoded columnar, once per batch) into
the vendor envelope; the usual way is to turn each row into a dict and ``json.dumps`` the
envelope. Both run here, in the same process and run, over the same synthetic batches, each
sending through an in-memory HTTP transport that answers 202/200 at once, so what is timed
is the sink's own CPU work per event (building, gzip for Datadog, httpx) and not a network.

    python benchmarks/sink_bench.py [--events 200000] [--batch 1000]
    python benchmarks/sink_bench.py --webhook [--events 3000] [--concurrency 1]

Prints events/s per sink and the ratio ours / naive.  Then the same sinks with a typical
``privacy:`` section (two fields hashed, the IP masked to /24, metadata cut to two keys): the
column-wise transform applied to each batch before the sink builds its payload, against the
naive sender applying the same rules to each event's dict, and against our sink without privacy.

``--webhook`` times webhooks sent one event per request over real HTTP: ``audit-pipeline forward
webhook:bench --once`` (the documented command, from a scratch PostgreSQL database; needs the server of
``AUDIT_TEST_PG_URL``, default postgres@127.0.0.1:5432) into the signature-checking webhook stand-in
running in its own process, beside a plain ``httpx.Client`` loop POSTing the same events, signed the same
way, to the same receiver, in the same run. Prints requests/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import secrets
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from anywhere

from audit_pipeline.config.sections.privacy import PrivacySettings
from audit_pipeline.core.jsontext import jsonb_text
from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS
from audit_pipeline.sinks.base import EventBatch
from audit_pipeline.sinks.datadog import DatadogSink
from audit_pipeline.sinks.privacy import PrivacyFilter
from audit_pipeline.sinks.splunk import SplunkSink
from audit_pipeline.sources.synthetic import generate_events


def _batches(total: int, size: int) -> list[EventBatch]:
    now = dt.datetime.now(dt.UTC)
    rows = []
    for n, event in enumerate(generate_events(dt.date(2024, 1, 15), total)):
        event["created_at"] = now - dt.timedelta(hours=1) + dt.timedelta(microseconds=n)
        event["metadata"] = jsonb_text(event["metadata"])
        rows.append({c: event.get(c) for c in COLUMNS})
    table = pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
    return [EventBatch(b) for b in table.to_batches(max_chunksize=size)]


def _transport(status: int, body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, content=body))


def _naive_datadog(client: httpx.Client) -> Callable[[EventBatch], None]:
    def send(events: EventBatch) -> None:
        logs = []
        for i in range(len(events)):
            event = events.event(i)
            created = dt.datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
            logs.append(
                {
                    "ddsource": "hellojohn-audit",
                    "service": "hellojohn",
                    "hostname": "bench",
                    "ddtags": "env:bench",
                    "message": f"{event['type']} {event['result']}",
                    "timestamp": int(created.timestamp() * 1000),
                    **event,
                }
            )
        body = gzip.compress(json.dumps(logs, default=_decimal).encode(), compresslevel=3)
        client.post("http://intake.invalid/api/v2/logs", content=body, headers={"DD-API-KEY": "k", "Content-Encoding": "gzip"})

    return send


def _naive_splunk(client: httpx.Client) -> Callable[[EventBatch], None]:
    def send(events: EventBatch) -> None:
        parts = []
        for i in range(len(events)):
            event = events.event(i)
            created = dt.datetime.fromisoformat(event["created_at"].replace("Z", "+00:00"))
            parts.append(json.dumps({"time": created.timestamp(), "host": "bench", "source": "s", "sourcetype": "_json", "event": event}, default=_decimal))
        client.post("http://hec.invalid/services/collector/event", content="".join(parts).encode(), headers={"Authorization": "Splunk t"})

    return send


def _decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def _time(send: Callable[[EventBatch], Any], batches: list[EventBatch]) -> float:
    fresh = [EventBatch(b.batch) for b in batches]  # nothing cached from an earlier run
    started = time.perf_counter()
    for events in fresh:
        send(events)
    return time.perf_counter() - started


PRIVACY = PrivacySettings.model_validate(
    {
        "hash": ["actor_email", "actor_id"],
        "mask": {"ip_address": 24},
        "metadata_keys": ["reason", "user_agent"],
        "hash_key": "bench-privacy-key-0123456789abcdef",
    }
)


def _with_privacy(send: Callable[[EventBatch], Any]) -> Callable[[EventBatch], Any]:
    protect = PrivacyFilter(PRIVACY)
    return lambda events: send(EventBatch(protect(events.batch)))


def _naive_privacy(send: Callable[[EventBatch], None]) -> Callable[[EventBatch], None]:
    """The same rules event by event on Python dicts, then the naive sender."""
    import hashlib
    import hmac
    import ipaddress

    key = PRIVACY.hash_key.get_secret_value().encode() if PRIVACY.hash_key else b""
    keep = set(PRIVACY.metadata_keys or ())

    def protect_row(row: dict[str, Any]) -> dict[str, Any]:
        for name in PRIVACY.hash:
            if row[name] is not None:
                row[name] = hmac.new(key, row[name].encode(), hashlib.sha256).hexdigest()
        if row["ip_address"] is not None:
            row["ip_address"] = (
                str(ipaddress.ip_interface(row["ip_address"]).network.supernet(new_prefix=24)) if ":" not in row["ip_address"] else row["ip_address"]
            )
        metadata = json.loads(row["metadata"], parse_float=Decimal)
        row["metadata"] = jsonb_text({k: v for k, v in metadata.items() if k in keep})
        return row

    def protected(events: EventBatch) -> None:
        rows = [protect_row(r) for r in events.batch.to_pylist()]
        send(EventBatch(pa.RecordBatch.from_pylist(rows, schema=ARROW_SCHEMA)))

    return protected


_RECEIVER = """
import sys, threading
from audit_pipeline_tests.standins.webhook import WebhookReceiver
receiver = WebhookReceiver(secret=sys.argv[1])
print(receiver.endpoint, flush=True)
sys.stdin.read()  # until the benchmark closes our stdin
print(len(receiver.deliveries), len(receiver.wire_errors), flush=True)
"""


def webhook_bench(events: int, concurrency: int | None) -> None:
    """Requests/s of the forward command (one event per request) and of a plain httpx loop, same receiver, same run."""
    import os
    import re
    import subprocess
    import tempfile

    from audit_pipeline.sinks.webhook import sign, webhook_id
    from audit_pipeline_tests.conftest import drop_database, make_database

    secret = secrets.token_hex(16)  # a fresh signing secret per run, shared with the receiver it starts
    db = make_database("sink_bench")
    receiver = subprocess.Popen(
        [sys.executable, "-c", _RECEIVER, secret], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    try:
        assert receiver.stdout is not None and receiver.stdin is not None
        endpoint = receiver.stdout.readline().strip()
        rows = list(generate_events(dt.date(2024, 1, 15), events))
        db.insert(rows)
        # The baseline: a plain keep-alive loop, one signed POST per event, the bodies our encoder gives.
        batches = _batches(events, 1_000)
        key = secret.encode()
        with httpx.Client() as client:
            start = time.perf_counter()
            for batch in batches:
                for i, body in enumerate(batch.lines()):
                    msg_id = webhook_id(batch.ids[i])
                    stamp = int(time.time())
                    headers = {
                        "Content-Type": "application/json",
                        "webhook-id": msg_id,
                        "webhook-timestamp": str(stamp),
                        "webhook-signature": sign([key], msg_id, stamp, body),
                    }
                    client.post(endpoint, content=body, headers=headers).raise_for_status()
            plain = events / (time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as work:
            extra = f", concurrency: {concurrency}" if concurrency else ""
            Path(work, "audit_pipeline.yaml").write_text(
                f"source:\n  database_url: {db.url}\nexport:\n  url: {work}/exports\nforwarding:\n  settle_seconds: 0\n"
                f"sinks:\n  webhooks:\n    - {{name: bench, url: '{endpoint}', secret: {secret}, start: earliest{extra}}}\n"
            )
            command = [str(Path(sys.executable).parent / "audit-pipeline"), "forward", "webhook:bench", "--once"]
            start = time.perf_counter()
            done = subprocess.run(
                command, cwd=work, capture_output=True, text=True, env={**os.environ, "AUDIT_CONFIG": f"{work}/audit_pipeline.yaml"}, check=False
            )
            wall = time.perf_counter() - start
        found = re.search(r"([\d,]+) delivered, \d+ dead-lettered in ([\d.]+)s", done.stdout)
        if done.returncode != 0 or found is None:
            raise SystemExit(f"forward failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-1000:]}")
        delivered, seconds = int(found.group(1).replace(",", "")), float(found.group(2))
        ours = delivered / seconds
        print(f"{events:,} events, one per request, concurrency {concurrency or 'default (1)'}")
        print(f"forward command  {ours:>8,.0f} requests/s  ({delivered:,} in {seconds:.2f}s of its pass; {wall:.2f}s with start-up)")
        print(f"plain httpx loop {plain:>8,.0f} requests/s")
        print(f"ratio ours/plain {ours / plain:.2f}x")
    finally:
        if receiver.stdin is not None:
            receiver.stdin.close()
        out = receiver.stdout.read() if receiver.stdout is not None else ""
        receiver.wait(timeout=30)
        drop_database(db)
    received, errors = (int(x) for x in out.split()) if out.strip() else (0, 0)
    print(f"receiver: {received:,} signed deliveries accepted, {errors} refused")


def schema_bench(total: int, size: int) -> None:
    """``schema:`` cost: each mapping alone over the batches' exported lines, then a whole ``send`` per schema."""
    from audit_pipeline.schemas.cim import CimMapper
    from audit_pipeline.schemas.ecs import EcsMapper
    from audit_pipeline.schemas.ocsf import OcsfMapper

    batches = _batches(total, size)
    for events in batches:
        events.ndjson()  # the exported lines exist before any sink sees the batch: not part of the mapping's cost
    print(f"{total:,} events in batches of {size:,}; mapping alone (from the Arrow batch and its NDJSON lines to JSON documents)")
    for name, mapper in (("ocsf", OcsfMapper()), ("ecs", EcsMapper()), ("cim", CimMapper())):
        seconds = _time(lambda events, m=mapper: m.encode_batch(events.batch, list(events.lines())), batches)
        print(f"  {name:5} {total / seconds:>10,.0f} events/s")
    for sink_name, schemas in (("splunk", ("raw", "cim", "ocsf")), ("datadog", ("raw", "ocsf"))):
        for schema in schemas:
            if sink_name == "splunk":
                sink: Any = SplunkSink.from_config({"hec_url": "http://hec.invalid", "hec_token": "t", "host": "bench", "schema": schema})
                sink._client = httpx.Client(transport=_transport(200, b'{"text":"Success","code":0}'))
            else:
                sink = DatadogSink.from_config({"api_key": "k", "url": "http://intake.invalid/api/v2/logs", "hostname": "bench", "schema": schema})
                sink._client = httpx.Client(transport=_transport(202, b"{}"))
            seconds = _time(sink.send, batches)
            print(f"  {sink_name:8} schema {schema:5} {total / seconds:>10,.0f} events/s (whole send)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--webhook", action="store_true", help="Webhooks one event per request over HTTP, beside a plain httpx loop.")
    parser.add_argument("--concurrency", type=int, default=None, help="With --webhook: sinks.webhooks[0].concurrency.")
    parser.add_argument("--schemas", action="store_true", help="Events/s per schema: the mapping alone, and the Splunk and Datadog sinks with it.")
    args = parser.parse_args()
    if args.webhook:
        webhook_bench(args.events or 3_000, args.concurrency)
        return
    if args.schemas:
        schema_bench(args.events or 100_000, args.batch)
        return
    args.events = args.events or 200_000
    batches = _batches(args.events, args.batch)

    datadog = DatadogSink.from_config({"api_key": "k", "url": "http://intake.invalid/api/v2/logs", "hostname": "bench", "tags": ["env:bench"]})
    datadog._client = httpx.Client(transport=_transport(202, b"{}"))
    splunk = SplunkSink.from_config({"hec_url": "http://hec.invalid", "hec_token": "t", "host": "bench"})
    splunk._client = httpx.Client(transport=_transport(200, b'{"text":"Success","code":0}'))
    naive_dd = _naive_datadog(httpx.Client(transport=_transport(202, b"{}")))
    naive_hec = _naive_splunk(httpx.Client(transport=_transport(200, b'{"text":"Success","code":0}')))

    print(f"{args.events:,} events in batches of {args.batch:,}")
    for name, ours, naive in (("datadog", datadog.send, naive_dd), ("splunk", splunk.send, naive_hec)):
        ours_s, naive_s = _time(ours, batches), _time(naive, batches)
        print(
            f"{name:8} ours {args.events / ours_s:>10,.0f} events/s   naive {args.events / naive_s:>10,.0f} events/s   ratio ours/naive {naive_s / ours_s:.2f}x"
        )
    print("with privacy: hash actor_email and actor_id, ip_address /24, metadata_keys [reason, user_agent]")
    protect = PrivacyFilter(PRIVACY)
    transform_s = _time(lambda events: protect(events.batch), batches)
    print(f"transform alone {args.events / transform_s:>10,.0f} events/s")
    for name, ours, naive in (("datadog", datadog.send, naive_dd), ("splunk", splunk.send, naive_hec)):
        plain_s = _time(ours, batches)
        ours_s, naive_s = _time(_with_privacy(ours), batches), _time(_naive_privacy(naive), batches)
        print(
            f"{name:8} ours {args.events / ours_s:>10,.0f} events/s   naive {args.events / naive_s:>10,.0f} events/s   "
            f"ratio ours/naive {naive_s / ours_s:.2f}x   cost of privacy {ours_s / plain_s:.2f}x our time without it"
        )


if __name__ == "__main__":
    main()
