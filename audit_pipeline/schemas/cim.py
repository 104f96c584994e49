"""HelloJohn audit event → Splunk CIM-ready event (``sinks.splunk.schema: cim``).

Authentication events (OCSF class 3002) carry the fields of CIM's Authentication data model
(https://docs.splunk.com/Documentation/CIM/6.0.0/User/Authentication): ``action`` success/failure,
``app``, ``src``, ``dest``, ``user``, ``user_id``, ``signature``, ``signature_id``, ``reason``,
``authentication_method``, ``src_user``.  Every other event carries the Change data model's
(https://docs.splunk.com/Documentation/CIM/6.0.0/User/Change): ``action`` (created, modified,
deleted, read), ``change_type`` AAA, ``object``, ``object_category``, ``object_id``, ``result``,
``status`` success/failure, ``user`` (the account changed, else the actor), ``src_user`` (the actor),
``dest``, ``src``, ``vendor_product``.  ``signature``/``signature_id`` are the OCSF type name and
``type_uid``, as Splunk's own OCSF→CIM add-on sets them, so both views agree.  Tags (``authentication``,
``change``) come from an eventtype in Splunk; the docs page has the two lines to add.

The original event, after the sink's privacy settings, stays whole in ``hellojohn``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.schemas import ocsf_table as table
from audit_pipeline.schemas.ocsf import OcsfMapper, metadata_reason

APP = "HelloJohn"
#: Change model ``action`` for an OCSF activity (CIM's prescribed values).
_CHANGE_ACTIONS = {"Create": "created", "Delete": "deleted", "Read": "read"}


def _method(event_type: str, mfa: bool) -> str:
    if "passkey" in event_type:
        return "passkey"
    if mfa:
        return "mfa"
    if event_type.startswith("token."):
        return "token"
    return "password"


class CimMapper:
    def __init__(self, ocsf: OcsfMapper | None = None) -> None:
        self.ocsf = ocsf or OcsfMapper()

    def map_batch(self, batch: pa.RecordBatch, lines: Sequence[bytes]) -> list[dict[str, Any]]:
        n = batch.num_rows
        values = {name: batch.column(COLUMNS.index(name)).to_pylist() for name in COLUMNS if name not in ("created_at", "metadata")}
        metadata = batch.column(COLUMNS.index("metadata")).to_pylist()
        version = self.ocsf.version
        out: list[dict[str, Any]] = []
        for i in range(n):
            event_type, result = values["type"][i], values["result"][i]
            row = self.ocsf.row(event_type)
            activity = table.ACTIVITIES[version][row.class_uid][row.activity_id]
            actor = values["actor_email"][i] or values["actor_id"][i] or values["actor_type"][i] or "unknown"
            status = result if result in ("success", "failure") else "unknown"
            doc: dict[str, Any] = {
                "app": APP,
                "vendor_product": APP,
                "dest": values["tenant_id"][i] or APP,
                "src": values["ip_address"][i] or "unknown",
                "signature": f"{table.CLASS_NAMES[row.class_uid]}: {activity}",
                "signature_id": row.class_uid * 100 + row.activity_id,
                "id": values["id"][i],
                "event_type": event_type,
            }
            reason = metadata_reason(metadata[i])
            if reason:
                doc["reason"] = reason
            if values["country"][i]:
                doc["src_country"] = values["country"][i]
            target = values["resource_id"][i] if values["resource_type"][i] == "user" else None
            if row.class_uid == table.AUTHENTICATION:
                doc["action"] = status if status != "unknown" else "error"
                doc["user"] = actor
                if values["actor_id"][i]:
                    doc["user_id"] = values["actor_id"][i]
                doc["src_user"] = actor
                doc["authentication_method"] = _method(event_type, row.mfa)
            else:
                doc["action"] = _CHANGE_ACTIONS.get(activity, "modified")
                doc["change_type"] = "AAA"
                doc["status"] = status
                doc["result"] = activity
                doc["object_category"] = values["resource_type"][i] or event_type.partition(".")[0]
                if values["resource_id"][i]:
                    doc["object_id"] = values["resource_id"][i]
                    doc["object"] = values["resource_id"][i]
                doc["user"] = target or actor
                if target:
                    doc["user_id"] = target
                doc["src_user"] = actor
            if values["tenant_id"][i]:
                doc["tenant_id"] = values["tenant_id"][i]
            if values["organization_id"][i]:
                doc["organization_id"] = values["organization_id"][i]
            doc["hellojohn"] = orjson.Fragment(lines[i])
            out.append(doc)
        return out

    def encode_batch(self, batch: pa.RecordBatch, lines: Sequence[bytes]) -> list[bytes]:
        return [orjson.dumps(doc) for doc in self.map_batch(batch, lines)]
