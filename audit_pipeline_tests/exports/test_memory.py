"""An export keeps pyarrow from loading pandas (about 40 MB of peak it never uses)."""

from __future__ import annotations

import subprocess
import sys

EXPORT_THEN_REPORT = """
import datetime as dt, sys
from pathlib import Path
from audit_pipeline.exports.day import export_day
from audit_pipeline.config.settings import ExportSettings
from audit_pipeline.sources.demo import DemoSource
from audit_pipeline.storage.object_store import ObjectStore

source = DemoSource(Path("demo.db").resolve())
source.seed(days=[dt.date(2024, 1, 15)], per_day=300)
result = export_day(source, ObjectStore(str(Path("exports").resolve())), dt.date(2024, 1, 15), ExportSettings())
print(result.rows, "pandas" in sys.modules)
import pyarrow as pa
print(type(pa.table({"a": [1]}).to_pandas()).__name__)  # after the export, pandas loads again when asked for
"""


def test_an_export_does_not_load_pandas_and_leaves_it_loadable(tmp_path):
    done = subprocess.run([sys.executable, "-c", EXPORT_THEN_REPORT], cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["300", "False", "DataFrame"]
