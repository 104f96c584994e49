"""HelloJohn audit event → Elastic Common Schema document (``sinks.elasticsearch.schema: ecs``).

Elastic's SIEM rules and dashboards look for ``event.category: authentication``, ``event.outcome``,
``source.ip`` and ``user.*``; with these fields they work on HelloJohn events without a parser.
The category/type pair follows the OCSF class and activity of the event (one table for every
target, :mod:`.ocsf_table`):

* Authentication (3002): ``category [authentication, session]``, ``type`` ``start`` (logon),
  ``end`` (logoff) or ``info``; ``user.*`` is who authenticated.
* Account Change / User Access Management (3001, 3005): ``category [iam]``, ``type [user, creation |
  deletion | change]``; ``user.*`` is the actor, ``user.target.*`` the affected user (ECS's user usage).
* Group Management (3006): ``category [iam]``, ``type [group, change | creation | deletion]``,
  the organization in ``group.id``.
* Entity Management (3004): ``category [configuration]``, ``type [creation | change | deletion |
  access | info]``.

Only allowed values are written (:data:`ALLOWED`, from Elastic's "ECS categorization fields" pages:
https://elastic.co/docs/reference/ecs/ecs-allowed-values-event-kind, ...-event-category,
...-event-type, ...-event-outcome); ``event.action`` carries HelloJohn's own type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa

from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.formats.encoding import format_created_at
from audit_pipeline.schemas import ocsf_table as table
from audit_pipeline.schemas.ocsf import OcsfMapper, metadata_reason

#: The ECS release whose field set and allowed values these documents follow (``ecs.version``).
ECS_VERSION = "8.11.0"

#: ECS's closed lists (Elastic's documentation of the four categorization fields).
ALLOWED: dict[str, frozenset[str]] = {
    "event.kind": frozenset({"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}),
    "event.category": frozenset(
        {
            "api",
            "authentication",
            "configuration",
            "database",
            "driver",
            "email",
            "file",
            "host",
            "iam",
            "intrusion_detection",
            "library",
            "malware",
            "network",
            "package",
            "process",
            "registry",
            "session",
            "threat",
            "vulnerability",
            "web",
        }
    ),
    "event.type": frozenset(
        {
            "access",
            "admin",
            "allowed",
            "change",
            "connection",
            "creation",
            "deletion",
            "denied",
            "device",
            "end",
            "error",
            "group",
            "indicator",
            "info",
            "installation",
            "protocol",
            "start",
            "user",
        }
    ),
    "event.outcome": frozenset({"success", "failure", "unknown"}),
}
#: The event types ECS expects with each category we write ("Expected event types for category ...").
EXPECTED_TYPES: dict[str, frozenset[str]] = {
    "authentication": frozenset({"start", "end", "info"}),
    "session": frozenset({"start", "end", "info"}),
    "iam": frozenset({"admin", "change", "creation", "deletion", "group", "info", "user"}),
    "configuration": frozenset({"access", "change", "creation", "deletion", "info"}),
}

_CREATE = {(table.ACCOUNT_CHANGE, 1), (table.GROUP_MANAGEMENT, 6), (table.ENTITY_MANAGEMENT, 1)}
_DELETE = {(table.ACCOUNT_CHANGE, 6), (table.GROUP_MANAGEMENT, 5), (table.ENTITY_MANAGEMENT, 4)}


def categorize(class_uid: int, activity_id: int) -> tuple[list[str], list[str]]:
    """``(event.category, event.type)`` for an OCSF class and activity."""
    verb = "creation" if (class_uid, activity_id) in _CREATE else "deletion" if (class_uid, activity_id) in _DELETE else "change"
    if class_uid == table.AUTHENTICATION:
        kind = {1: "start", 2: "end"}.get(activity_id, "info")
        return ["authentication", "session"], [kind]
    if class_uid in (table.ACCOUNT_CHANGE, table.USER_ACCESS_MANAGEMENT):
        return ["iam"], ["user", verb]
    if class_uid == table.GROUP_MANAGEMENT:
        return ["iam"], ["group", verb]
    if activity_id == 2:
        return ["configuration"], ["access"]
    return ["configuration"], ["info" if activity_id in (0, 99) else verb]


def _is_plain_ip(value: str) -> bool:
    return "/" not in value


class EcsMapper:
    """ECS documents for a batch; ``original`` keeps the exported line in ``event.original``."""

    def __init__(self, *, original: bool = True, ocsf: OcsfMapper | None = None) -> None:
        self.original = original
        self.ocsf = ocsf or OcsfMapper()
        self._category: dict[str, tuple[list[str], list[str]]] = {}

    def categories(self, event_type: str) -> tuple[list[str], list[str]]:
        found = self._category.get(event_type)
        if found is None:
            row = self.ocsf.row(event_type)
            found = self._category[event_type] = categorize(row.class_uid, row.activity_id)
        return found

    def map_batch(self, batch: pa.RecordBatch, lines: Sequence[bytes]) -> list[dict[str, Any]]:
        n = batch.num_rows
        if n == 0:
            return []
        values = {name: batch.column(COLUMNS.index(name)).to_pylist() for name in COLUMNS if name not in ("created_at", "metadata")}
        stamps = format_created_at(batch.column(COLUMNS.index("created_at"))).to_pylist()
        metadata = batch.column(COLUMNS.index("metadata")).to_pylist()
        out: list[dict[str, Any]] = []
        for i in range(n):
            event_type = values["type"][i]
            category, types = self.categories(event_type)
            result = values["result"][i]
            event: dict[str, Any] = {
                "kind": "event",
                "category": category,
                "type": types,
                "action": event_type,
                "outcome": result if result in ("success", "failure") else "unknown",
                "id": values["id"][i],
                "dataset": "hellojohn.audit",
                "module": "hellojohn",
                "provider": "hellojohn",
            }
            reason = metadata_reason(metadata[i])
            if reason is not None:
                event["reason"] = reason
            if self.original:
                event["original"] = lines[i].decode("utf-8")
            doc: dict[str, Any] = {"@timestamp": stamps[i], "ecs": {"version": ECS_VERSION}, "event": event}
            actor = _user(values["actor_id"][i], values["actor_email"][i])
            target_type, target_id = values["resource_type"][i], values["resource_id"][i]
            if category[0] == "iam" and target_type == "user" and target_id:
                actor = dict(actor or {})
                actor["target"] = {"id": target_id}
            if actor:
                doc["user"] = actor
            if category[0] == "iam" and types[0] == "group" and values["organization_id"][i]:
                doc["group"] = {"id": values["organization_id"][i]}
            ip, country = values["ip_address"][i], values["country"][i]
            source: dict[str, Any] = {}
            if ip is not None:
                source["ip" if _is_plain_ip(ip) else "address"] = ip
            if country:
                source["geo"] = {"country_iso_code": country}
            if source:
                doc["source"] = source
            if values["organization_id"][i]:
                doc["organization"] = {"id": values["organization_id"][i]}
            if values["tenant_id"][i]:
                doc["labels"] = {"tenant_id": values["tenant_id"][i]}
            doc["hellojohn"] = {k: v for k, v in (("actor_type", values["actor_type"][i]), ("resource_type", target_type), ("resource_id", target_id)) if v}
            out.append(doc)
        return out

    def encode_batch(self, batch: pa.RecordBatch, lines: Sequence[bytes]) -> list[bytes]:
        return [orjson.dumps(doc) for doc in self.map_batch(batch, lines)]


def _user(actor_id: str | None, email: str | None) -> dict[str, Any] | None:
    user: dict[str, Any] = {}
    if actor_id is not None:
        user["id"] = actor_id
    if email is not None:
        user["email"] = email
        user["name"] = email
    return user or None


_KEYWORD = {"type": "keyword", "ignore_above": 1024}


def index_mappings() -> dict[str, Any]:
    """The ECS index template's mappings: ECS's own field types (``date``, ``keyword``, ``ip``).

    ``event.original`` is stored but not indexed, as ECS defines it; ``dynamic: false`` keeps
    anything else in ``_source`` without growing the mapping."""

    def obj(**fields: Any) -> dict[str, Any]:
        return {"properties": fields}

    kw = dict(_KEYWORD)
    return {
        "dynamic": "false",
        "properties": {
            "@timestamp": {"type": "date"},
            "ecs": obj(version=kw),
            "event": obj(
                kind=kw,
                category=kw,
                type=kw,
                action=kw,
                outcome=kw,
                id=kw,
                dataset=kw,
                module=kw,
                provider=kw,
                reason=kw,
                original={"type": "keyword", "index": False, "doc_values": False},
            ),
            "user": obj(id=kw, email=kw, name=kw, target=obj(id=kw)),
            "group": obj(id=kw),
            "source": obj(ip={"type": "ip"}, address=kw, geo=obj(country_iso_code=kw)),
            "organization": obj(id=kw),
            "labels": obj(tenant_id=kw),
            "hellojohn": obj(actor_type=kw, resource_type=kw, resource_id=kw),
        },
    }
