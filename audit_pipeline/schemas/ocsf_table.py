"""The HelloJohn event type → OCSF class/activity table, and the few OCSF facts the mapping needs.

Why a table and not code: a deployment with its own event types adds rows in its settings
(``sinks.<name>.ocsf.event_types``) and the docs print this table as it is.  Class and activity
captions are copied from the OCSF 1.1.0 and 1.8.0 schemas; the tests check every row against the
compiled schemas themselves, not against this file.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

#: OCSF category 3.
CATEGORY_UID = 3
CATEGORY_NAME = "Identity & Access Management"

ACCOUNT_CHANGE = 3001
AUTHENTICATION = 3002
ENTITY_MANAGEMENT = 3004
USER_ACCESS_MANAGEMENT = 3005
GROUP_MANAGEMENT = 3006

CLASS_NAMES: dict[int, str] = {
    ACCOUNT_CHANGE: "Account Change",
    AUTHENTICATION: "Authentication",
    ENTITY_MANAGEMENT: "Entity Management",
    USER_ACCESS_MANAGEMENT: "User Access Management",
    GROUP_MANAGEMENT: "Group Management",
}

_COMMON = {0: "Unknown", 99: "Other"}
_ACTIVITIES_1_1: dict[int, dict[int, str]] = {
    ACCOUNT_CHANGE: {
        1: "Create",
        2: "Enable",
        3: "Password Change",
        4: "Password Reset",
        5: "Disable",
        6: "Delete",
        7: "Attach Policy",
        8: "Detach Policy",
        9: "Lock",
        10: "MFA Factor Enable",
        11: "MFA Factor Disable",
    },
    AUTHENTICATION: {1: "Logon", 2: "Logoff", 3: "Authentication Ticket", 4: "Service Ticket Request", 5: "Service Ticket Renew"},
    ENTITY_MANAGEMENT: {1: "Create", 2: "Read", 3: "Update", 4: "Delete"},
    USER_ACCESS_MANAGEMENT: {1: "Assign Privileges", 2: "Revoke Privileges"},
    GROUP_MANAGEMENT: {1: "Assign Privileges", 2: "Revoke Privileges", 3: "Add User", 4: "Remove User", 5: "Delete", 6: "Create"},
}
_ACTIVITIES_1_8: dict[int, dict[int, str]] = {
    ACCOUNT_CHANGE: {**_ACTIVITIES_1_1[ACCOUNT_CHANGE], 12: "Unlock"},
    AUTHENTICATION: {**_ACTIVITIES_1_1[AUTHENTICATION], 6: "Preauth", 7: "Account Switch"},
    ENTITY_MANAGEMENT: {
        **_ACTIVITIES_1_1[ENTITY_MANAGEMENT],
        5: "Move",
        6: "Enroll",
        7: "Unenroll",
        8: "Enable",
        9: "Disable",
        10: "Activate",
        11: "Deactivate",
        12: "Suspend",
        13: "Resume",
    },
    USER_ACCESS_MANAGEMENT: dict(_ACTIVITIES_1_1[USER_ACCESS_MANAGEMENT]),
    GROUP_MANAGEMENT: {**_ACTIVITIES_1_1[GROUP_MANAGEMENT], 7: "Add Subgroup", 8: "Remove Subgroup"},
}
#: OCSF version → class_uid → activity_id → caption (0 Unknown and 99 Other in every class).
ACTIVITIES: dict[str, dict[int, dict[int, str]]] = {
    version: {uid: {**names, **_COMMON} for uid, names in table.items()} for version, table in (("1.1.0", _ACTIVITIES_1_1), ("1.8.0", _ACTIVITIES_1_8))
}

#: Classes that define ``src_endpoint`` in each version (1.1.0 has it on Authentication and Account Change only).
SRC_ENDPOINT_CLASSES: dict[str, frozenset[int]] = {
    "1.1.0": frozenset({AUTHENTICATION, ACCOUNT_CHANGE}),
    "1.8.0": frozenset(CLASS_NAMES),
}

SEVERITIES = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal", 99: "Other"}
STATUSES = {0: "Unknown", 1: "Success", 2: "Failure", 99: "Other"}
#: ``actor_type`` → OCSF ``user.type_id`` (1 User, 2 Admin, 3 System; 99 Other with ``type`` naming it).
USER_TYPES = {"user": 1, "admin": 2, "system": 3}


@dataclass(frozen=True)
class Row:
    """One row of the table: where an event type goes."""

    class_uid: int
    activity_id: int
    severity_id: int | None = None
    #: Authentication by a second factor (OCSF ``is_mfa``).
    mfa: bool = False


#: The built-in table: every event type HelloJohn documents and the synthetic source produces.
DEFAULT_TABLE: dict[str, Row] = {
    # Authentication 3002
    "user.login": Row(AUTHENTICATION, 1),
    "user.login_failed": Row(AUTHENTICATION, 1),
    "user.passkey_login": Row(AUTHENTICATION, 1, mfa=True),
    "user.mfa_challenge": Row(AUTHENTICATION, 1, mfa=True),
    "user.mfa_verified": Row(AUTHENTICATION, 1, mfa=True),
    "user.mfa_failed": Row(AUTHENTICATION, 1, mfa=True),
    "user.logout": Row(AUTHENTICATION, 2),
    "token.issued": Row(AUTHENTICATION, 3),
    "token.refreshed": Row(AUTHENTICATION, 3),
    "token.exchanged": Row(AUTHENTICATION, 3),
    # Account Change 3001
    "user.signup": Row(ACCOUNT_CHANGE, 1),
    "user.created": Row(ACCOUNT_CHANGE, 1),
    "user.enabled": Row(ACCOUNT_CHANGE, 2),
    "user.password_changed": Row(ACCOUNT_CHANGE, 3),
    "user.password_reset": Row(ACCOUNT_CHANGE, 4),
    "user.disabled": Row(ACCOUNT_CHANGE, 5),
    "user.deleted": Row(ACCOUNT_CHANGE, 6),
    "user.locked": Row(ACCOUNT_CHANGE, 9),
    "user.mfa_enrolled": Row(ACCOUNT_CHANGE, 10),
    "user.mfa_removed": Row(ACCOUNT_CHANGE, 11, severity_id=3),
    # User Access Management 3005
    "role.assigned": Row(USER_ACCESS_MANAGEMENT, 1),
    "role.revoked": Row(USER_ACCESS_MANAGEMENT, 2),
    # Group Management 3006 (organizations are HelloJohn's groups)
    "org.member_added": Row(GROUP_MANAGEMENT, 3),
    "org.member_removed": Row(GROUP_MANAGEMENT, 4),
    "org.created": Row(GROUP_MANAGEMENT, 6),
    "org.deleted": Row(GROUP_MANAGEMENT, 5),
    # Entity Management 3004: sessions, keys, settings, clients, connections, tenants
    "session.revoked": Row(ENTITY_MANAGEMENT, 4),
    "api_key.created": Row(ENTITY_MANAGEMENT, 1),
    "api_key.revoked": Row(ENTITY_MANAGEMENT, 4),
    "tenant.settings_updated": Row(ENTITY_MANAGEMENT, 3),
}

#: Fallback for a type in no table: its last word's verb decides an Entity Management activity.
VERB_ACTIVITIES: dict[str, int] = {
    "created": 1,
    "added": 1,
    "read": 2,
    "viewed": 2,
    "exported": 2,
    "updated": 3,
    "changed": 3,
    "settings_updated": 3,
    "deleted": 4,
    "removed": 4,
    "revoked": 4,
}
#: The last resort: Entity Management, activity 99 Other.
FALLBACK = Row(ENTITY_MANAGEMENT, 99)


def lookup(event_type: str, overrides: Mapping[str, Row]) -> Row:
    """The row for ``event_type``: an exact override, then an override pattern (in the order given),
    then the built-in table, then the verb of its last word (``client.created`` → 3004 Create),
    then :data:`FALLBACK`."""
    if event_type in overrides:
        return overrides[event_type]
    for pattern, row in overrides.items():
        if fnmatch.fnmatchcase(event_type, pattern):
            return row
    if event_type in DEFAULT_TABLE:
        return DEFAULT_TABLE[event_type]
    verb = event_type.rpartition(".")[2]
    for suffix, activity in VERB_ACTIVITIES.items():
        if verb == suffix or verb.endswith("_" + suffix):
            return Row(ENTITY_MANAGEMENT, activity)
    return FALLBACK
