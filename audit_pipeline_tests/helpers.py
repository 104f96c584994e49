"""Small helpers shared by tests: read exports back as Python values."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from audit_pipeline.schema import COLUMNS

csv.field_size_limit(sys.maxsize)  # metadata may be megabytes


def read_csv_rows(data: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def read_ndjson_rows(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
