"""The recomputation and signature snippets of docs/integrity.md, run as printed against a real export."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from audit_pipeline.storage.object_store import ObjectStore
from audit_pipeline_tests.integrity.support import insert_days, new_signer, seal_days, write_public_key

PAGE = Path(__file__).resolve().parents[2] / "docs" / "integrity.md"
DAYS = (dt.date(2024, 1, 14), dt.date(2024, 1, 15))


def _snippet(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert match, f"docs/integrity.md has no python block after <!-- {marker} -->"
    return match.group(1)


@pytest.fixture
def export_root(pg, tmp_path, monkeypatch):
    insert_days(pg, {DAYS[0]: 300, DAYS[1]: 400})
    root = tmp_path / "exports"
    signer = new_signer()
    seal_days(pg, ObjectStore(str(root)), days=DAYS, signer=signer)
    write_public_key(signer, root / "manifest_public.pem")
    monkeypatch.chdir(root)
    return root


def test_chain_snippet_recomputes_the_day_and_notices_a_change(export_root):
    code = _snippet("integrity-chain-snippet")
    assert 'day = "2024-01-15"' in code
    namespace: dict = {}
    exec(compile(code, "docs/integrity.md", "exec"), namespace)
    assert namespace["h"].hex() != namespace["manifest"]["chain"]["seed"]  # it hashed the day's 400 events
    path = export_root / "ndjson/date=2024-01-15/audit_logs.ndjson"
    path.write_bytes(path.read_bytes().replace(b'"result":"success"', b'"result":"failure"', 1))
    with pytest.raises(AssertionError, match="the events of 2024-01-15 differ from its manifest"):
        exec(compile(code, "docs/integrity.md", "exec"), {})


def test_signature_snippet_checks_a_manifest(export_root):
    code = _snippet("integrity-signature-snippet")
    exec(compile(code, "docs/integrity.md", "exec"), {})
    path = export_root / "manifests/date=2024-01-15.json"
    path.write_text(path.read_text().replace('"rows": 400', '"rows": 399'))
    with pytest.raises(InvalidSignature):
        exec(compile(code, "docs/integrity.md", "exec"), {})
