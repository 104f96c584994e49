"""Sealing and verifying on S3 (moto's server over HTTP, through s3fs), tampered with through boto3."""

from __future__ import annotations

import gzip

import pytest

from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.core.layout import manifest_key
from audit_pipeline.integrity.signing import Keyring
from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import DAYS, insert_days, messages, new_signer, seal_days, verify

D1, D2, D3 = DAYS


@pytest.mark.slow
def test_sealed_exports_on_s3_verify_and_tampering_is_named(pg, s3_server):
    insert_days(pg, {D1: 300, D2: 250, D3: 200})
    bucket = s3_server.new_bucket()
    prefix = "audit/prod"
    store = ObjectStore(f"s3://{bucket}/{prefix}", endpoint_url=s3_server.endpoint_url)
    signer = new_signer()
    seal_days(pg, store, signer=signer, options=ExportSettings(gzip=True))
    client = s3_server.client()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {f"{prefix}/{manifest_key(day)}" for day in DAYS} | {f"{prefix}/manifests/public_key.pem"} <= keys
    manifest_head = client.head_object(Bucket=bucket, Key=f"{prefix}/{manifest_key(D1)}")
    assert manifest_head["ContentType"] == "application/json" and manifest_head["ServerSideEncryption"] == "AES256"
    keyring = Keyring(pinned={signer.key_id: signer.public_key}, require_signature=True)
    assert all(r.ok for r in verify(store, keyring).values())

    # Swap two events inside the gzipped NDJSON of D2, and delete the Parquet object of D3.
    ndjson_key = f"{prefix}/ndjson/date={D2}/audit_logs.ndjson.gz"
    lines = gzip.decompress(client.get_object(Bucket=bucket, Key=ndjson_key)["Body"].read()).splitlines(keepends=True)
    lines[19], lines[20] = lines[20], lines[19]
    client.put_object(Bucket=bucket, Key=ndjson_key, Body=gzip.compress(b"".join(lines)))
    client.delete_object(Bucket=bucket, Key=f"{prefix}/parquet/date={D3}/audit_logs.parquet")
    reports = verify(store, keyring)
    assert reports[D1].ok
    assert f"object modified: ndjson/date={D2}/audit_logs.ndjson.gz" in messages(reports[D2])
    assert "events reordered: the recomputed chain differs from event 20 on; event 21 is out of (created_at, id) order" in messages(reports[D2])
    assert messages(reports[D3]) == f"object missing: parquet/date={D3}/audit_logs.parquet"
