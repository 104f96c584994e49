"""Cut a compiled OCSF schema down to what the HelloJohn mapping's tests read; print it as JSON.

The files beside this script were made with (ocsf-lib 0.10.4, in a separate environment: its
``termcolor<3`` pin conflicts with Dagster's, so it is not a dev dependency):

    pip install 'ocsf-lib>=0.10.4,<0.11'
    python -m ocsf.compile ../shared/reference/ocsf-schema-1.1.0 | python audit_pipeline_tests/schemas/data/ocsf_subset.py > audit_pipeline_tests/schemas/data/ocsf-1.1.0.json
    python -m ocsf.compile ../shared/reference/ocsf-schema-1.8.0 | python audit_pipeline_tests/schemas/data/ocsf_subset.py > audit_pipeline_tests/schemas/data/ocsf-1.8.0.json

Kept: the Identity & Access Management classes (category 3), every object those classes reach,
every type, the profiles; dropped: descriptions and the other categories' classes; ``profiles`` lists sorted (the compiler
writes them in set order).  Nothing else is
changed: a kept class or object is exactly as compiled, less its prose.  The OCSF schema is
Apache-2.0 licensed (see NOTICE.md here).
"""

from __future__ import annotations

import json
import sys
from typing import Any

_PROSE = {"description", "references"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        # ``profiles`` lists come out of the compiler in set order: sorted, so a compile is reproducible
        return {k: sorted(v) if k == "profiles" and isinstance(v, list) else _strip(v) for k, v in value.items() if k not in _PROSE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def subset(schema: dict[str, Any]) -> dict[str, Any]:
    classes = {name: c for name, c in schema["classes"].items() if str(c.get("uid", "")).startswith("30") and len(str(c["uid"])) == 4}
    objects: dict[str, Any] = {}
    pending = [a["type"] for c in classes.values() for a in c["attributes"].values()]
    pending += [a["type"] for p in schema.get("profiles", {}).values() for a in p.get("attributes", {}).values()]
    while pending:
        name = pending.pop()
        if name in objects or name not in schema["objects"]:
            continue
        objects[name] = schema["objects"][name]
        pending += [a["type"] for a in objects[name]["attributes"].values()]
    kept = {"version": schema["version"], "classes": classes, "objects": objects, "types": schema["types"], "profiles": schema.get("profiles", {})}
    return _strip(kept)


if __name__ == "__main__":
    json.dump(subset(json.load(sys.stdin)), sys.stdout, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")
