"""HelloJohn audit event → OCSF event: the one mapping every OCSF consumer uses (sinks, Security Lake).

The class and activity come from the table in :mod:`.ocsf_table` (plus a sink's overrides); the
rest is fixed by these rules, which the docs (``docs/schemas/ocsf.md``) repeat:

* ``type_uid = class_uid * 100 + activity_id``; ``category_uid`` 3 (Identity & Access Management).
* ``status_id`` 1 Success / 2 Failure from ``result`` (anything else 99 Other, its text in ``status``);
  ``status_detail`` = ``metadata.reason`` when the event has one.
* ``time`` = ``created_at`` in epoch milliseconds; the exact instant (microseconds) stays in
  ``metadata.original_time`` as exported (``2024-01-15T08:30:00.123456Z``).
* ``metadata``: ``uid`` = the event id (the dedup key), ``tenant_uid`` = ``tenant_id``, ``product``
  HelloJohn/HelloJohn, ``version`` = the OCSF version written, ``log_name`` ``audit_logs``; ``profiles``
  lists ``host`` when ``actor`` is set (OCSF defines ``actor`` on these classes through that profile).
* ``actor.user`` = the actor (``uid``, ``name`` and ``email_addr`` from the e-mail, ``type_id`` from
  ``actor_type``); ``user`` = the target: the resource when it is a user, else ``metadata.target_user_id``
  or ``metadata.user_id``, else (Authentication) the actor; a class that requires ``user`` and has
  none gets ``{"name": "unknown", "type_id": 0}``.
* ``src_endpoint.ip`` (a plain address; an address with a netmask, e.g. masked by a sink's privacy
  settings, is not an OCSF ``ip_t`` and stays only in ``unmapped``) and ``src_endpoint.location.country``,
  on the classes that define ``src_endpoint`` in the version written.
* ``severity_id``: the table row's when set (MFA removal: 3 Medium); otherwise 2 Low for a failure
  (a failed login) and for a change made by an ``admin`` actor; otherwise 1 Informational.
* ``unmapped``: the whole original event, exactly as the NDJSON export prints it (after the sink's
  privacy settings), so nothing is lost.

Column-wise where it pays: classification, severity and captions are computed once per distinct
``(type, result, actor_type)``; the instants are formatted by Arrow kernels for the whole batch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import orjson
import pyarrow as pa

from audit_pipeline.config.sections.ocsf import OcsfSettings
from audit_pipeline.core.errors import ConfigError
from audit_pipeline.core.schema import COLUMNS
from audit_pipeline.formats.encoding import format_created_at
from audit_pipeline.schemas import ocsf_table as table

PRODUCT = {"name": "HelloJohn", "vendor_name": "HelloJohn"}
#: OCSF 1.1.0's ``email_t`` pattern (1.8.0's is wider): an e-mail outside it goes to ``user.name`` only.
_EMAIL = re.compile(r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$")
_HEX_TOKEN = re.compile(r"^[0-9a-f]{64}$")
_UNKNOWN_USER = {"name": "unknown", "type_id": 0}
_CHANGE_CLASSES = frozenset({table.ACCOUNT_CHANGE, table.ENTITY_MANAGEMENT, table.USER_ACCESS_MANAGEMENT, table.GROUP_MANAGEMENT})


class OcsfMapper:
    """A sink's OCSF settings compiled: ``map_batch`` turns an Arrow batch of audit events into OCSF events."""

    def __init__(self, settings: OcsfSettings | None = None, where: str = "ocsf") -> None:
        self.settings = settings or OcsfSettings()
        self.version = self.settings.version
        activities = table.ACTIVITIES[self.version]
        overrides: dict[str, table.Row] = {}
        for key, entry in self.settings.event_types.items():
            if entry.class_uid not in activities:
                supported = ", ".join(f"{uid} {name}" for uid, name in table.CLASS_NAMES.items())
                raise ConfigError(f"{where}.event_types.{key}.class_uid: {entry.class_uid} is not a class the mapping writes; use one of {supported}")
            if entry.activity_id not in activities[entry.class_uid]:
                known = ", ".join(f"{i} {n}" for i, n in sorted(activities[entry.class_uid].items()))
                raise ConfigError(
                    f"{where}.event_types.{key}.activity_id: {entry.activity_id} is not an activity of class {entry.class_uid} in OCSF {self.version}; use one of {known}"
                )
            if entry.severity_id is not None and entry.severity_id not in table.SEVERITIES:
                raise ConfigError(f"{where}.event_types.{key}.severity_id: use 0-6 or 99")
            overrides[key] = table.Row(entry.class_uid, entry.activity_id, entry.severity_id)
        self.overrides = overrides
        self._base = lru_cache(maxsize=4096)(self._base_fields)

    def row(self, event_type: str) -> table.Row:
        """The table row (class, activity) of an event type."""
        return table.lookup(event_type, self.overrides)

    def _base_fields(self, event_type: str, result: str, actor_type: str | None) -> tuple[table.Row, dict[str, Any]]:
        """The fields that depend only on the type, result and actor type: computed once per distinct triple."""
        row = self.row(event_type)
        class_name = table.CLASS_NAMES[row.class_uid]
        activity = table.ACTIVITIES[self.version][row.class_uid][row.activity_id]
        status_id = 1 if result == "success" else 2 if result == "failure" else 99
        if row.severity_id is not None:
            severity = row.severity_id
        elif status_id == 2 or (actor_type == "admin" and row.class_uid in _CHANGE_CLASSES):
            severity = 2
        else:
            severity = 1
        fields: dict[str, Any] = {
            "activity_id": row.activity_id,
            "activity_name": activity,
            "category_uid": table.CATEGORY_UID,
            "category_name": table.CATEGORY_NAME,
            "class_uid": row.class_uid,
            "class_name": class_name,
            "type_uid": row.class_uid * 100 + row.activity_id,
            "type_name": f"{class_name}: {activity}",
            "severity_id": severity,
            "severity": table.SEVERITIES[severity],
            "status_id": status_id,
            "status": table.STATUSES[status_id] if status_id != 99 else result,
        }
        return row, fields

    def map_batch(self, batch: pa.RecordBatch, lines: Sequence[bytes]) -> list[dict[str, Any]]:
        """One OCSF event per row; ``lines`` are the rows' NDJSON lines (kept whole in ``unmapped``).

        ``unmapped`` holds the line as an :class:`orjson.Fragment`: encode with :func:`orjson.dumps`
        (or :meth:`encode_batch`); the line is spliced, never parsed and re-encoded."""
        n = batch.num_rows
        if n == 0:
            return []
        col = {name: batch.column(COLUMNS.index(name)) for name in COLUMNS}
        values = {name: col[name].to_pylist() for name in COLUMNS if name not in ("created_at", "metadata")}
        metadata = col["metadata"].to_pylist()
        micros = col["created_at"].cast(pa.int64()).to_numpy(zero_copy_only=False)
        original = format_created_at(col["created_at"]).to_pylist()
        version = self.version
        with_endpoint = table.SRC_ENDPOINT_CLASSES[version]
        out: list[dict[str, Any]] = []
        for i in range(n):
            event_type = values["type"][i]
            actor_type = values["actor_type"][i]
            row, base = self._base(event_type, values["result"][i], actor_type)
            event = dict(base)
            meta: dict[str, Any] = {"version": version, "product": PRODUCT, "uid": values["id"][i], "original_time": original[i], "log_name": "audit_logs"}
            tenant = values["tenant_id"][i]
            if tenant is not None:
                meta["tenant_uid"] = tenant
            event["time"] = int(micros[i]) // 1000
            event["timezone_offset"] = 0
            event["message"] = f"{event_type} {values['result'][i]}"
            extra = _metadata_fields(metadata[i])
            if "reason" in extra:
                event["status_detail"] = extra["reason"]
            actor = _actor(values["actor_id"][i], values["actor_email"][i], actor_type)
            if actor is not None:
                event["actor"] = {"user": actor}
                meta["profiles"] = ["host"]
            event["metadata"] = meta
            target = _target_user(values["resource_type"][i], values["resource_id"][i], extra)
            cls = row.class_uid
            if cls == table.AUTHENTICATION:
                event["user"] = target or (actor if actor_type not in ("admin", "system", "api_key") and actor else None) or _UNKNOWN_USER
                event["service"] = {"name": "HelloJohn"}
                if values["resource_type"][i] == "session" and values["resource_id"][i]:
                    event["session"] = {"uid": values["resource_id"][i]}
                if row.mfa:
                    event["is_mfa"] = True
            elif cls in (table.ACCOUNT_CHANGE, table.USER_ACCESS_MANAGEMENT, table.GROUP_MANAGEMENT):
                event["user"] = target or _UNKNOWN_USER
                if cls == table.USER_ACCESS_MANAGEMENT:
                    event["privileges"] = [extra.get("role") or values["resource_id"][i] or event_type]
                elif cls == table.GROUP_MANAGEMENT:
                    group_uid = values["organization_id"][i] or values["resource_id"][i]
                    event["group"] = {"uid": group_uid, "type": "organization"} if group_uid else {"name": "unknown"}
            else:
                event["entity"] = _entity(values["resource_type"][i], values["resource_id"][i], event_type)
            if cls in with_endpoint:
                endpoint = _endpoint(values["ip_address"][i], values["country"][i])
                if endpoint is not None:
                    event["src_endpoint"] = endpoint
            event["unmapped"] = orjson.Fragment(lines[i])
            out.append(event)
        return out

    def encode_batch(self, batch: pa.RecordBatch, lines: Sequence[bytes]) -> list[bytes]:
        """:meth:`map_batch` as compact JSON lines (no newline)."""
        return [orjson.dumps(event) for event in self.map_batch(batch, lines)]


def _metadata_fields(text: str | None) -> dict[str, str]:
    """The few keys of ``metadata`` the mapping reads (reason, target user, role), when they are strings.

    Parsed only when one of their names occurs in the text: most events have none of them."""
    if not text or not ('"reason"' in text or 'user_id"' in text or '"role"' in text):
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # an integer beyond 64 bits somewhere: these keys are not read then
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if k in ("reason", "target_user_id", "user_id", "role") and isinstance(v, str) and v}


def metadata_reason(text: str | None) -> str | None:
    """``metadata.reason`` when it is a non-empty string (why an action failed), for every target schema."""
    return _metadata_fields(text).get("reason")


def _actor(actor_id: str | None, email: str | None, actor_type: str | None) -> dict[str, Any] | None:
    if actor_id is None and email is None and actor_type is None:
        return None
    user: dict[str, Any] = {}
    if actor_id is not None:
        user["uid"] = actor_id
    if email is not None:
        if "@" in email:
            user["name"] = email
            if _EMAIL.match(email):
                user["email_addr"] = email
        elif _HEX_TOKEN.match(email):
            user["uid_alt"] = email  # an e-mail hashed by the sink's privacy settings: still joins across events
        else:
            user["domain"] = email  # an e-mail masked to its domain
    if actor_type is not None:
        type_id = table.USER_TYPES.get(actor_type, 99)
        user["type_id"] = type_id
        user["type"] = {1: "User", 2: "Admin", 3: "System"}.get(type_id, actor_type)
    if "uid" not in user and "name" not in user:
        user["name"] = actor_type or "unknown"
    return user


def _target_user(resource_type: str | None, resource_id: str | None, extra: dict[str, str]) -> dict[str, Any] | None:
    if resource_type == "user" and resource_id:
        return {"uid": resource_id}
    uid = extra.get("target_user_id") or extra.get("user_id")
    return {"uid": uid} if uid else None


def _entity(resource_type: str | None, resource_id: str | None, event_type: str) -> dict[str, Any]:
    if resource_id:
        entity: dict[str, Any] = {"uid": resource_id}
        if resource_type:
            entity["type"] = resource_type
        return entity
    return {"name": event_type, "type": resource_type or event_type.partition(".")[0]}


def _endpoint(ip: str | None, country: str | None) -> dict[str, Any] | None:
    if ip is None or "/" in ip:
        return None
    endpoint: dict[str, Any] = {"ip": ip.strip()}
    if country:
        endpoint["location"] = {"country": country}
    return endpoint
