"""Realistic synthetic HelloJohn audit events, deterministic for a seed.

Used by the embedded demo database, the tests and the benchmarks, so that all three
exercise the same shapes: NULL actors for system events, IPv4/IPv6, nested metadata.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

EVENT_TYPES = (
    ("user.login", "user", "session"),
    ("user.login_failed", "user", "session"),
    ("user.logout", "user", "session"),
    ("user.signup", "user", "user"),
    ("user.password_changed", "user", "user"),
    ("user.mfa_enrolled", "user", "user"),
    ("session.revoked", "admin", "session"),
    ("org.member_added", "admin", "organization"),
    ("org.member_removed", "admin", "organization"),
    ("role.assigned", "admin", "role"),
    ("api_key.created", "api_key", "api_key"),
    ("token.refreshed", "system", "session"),
    ("tenant.settings_updated", "admin", "tenant"),
)
FIRST = ("james", "mary", "wei", "priya", "mohammed", "yuki", "olga", "carlos", "fatima", "lars", "amara", "diego", "zoë", "josé")
LAST = ("smith", "garcia", "nguyen", "patel", "kim", "schmidt", "rossi", "kowalski", "tanaka", "silva", "okafor")
DOMAINS = ("acme.com", "globex.io", "initech.net", "hooli.xyz", "example.org")
COUNTRIES = ("US", "DE", "FR", "GB", "IN", "BR", "JP", "AR", "NG", None)
AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36",
    "okhttp/4.12.0",
    "HelloJohn-SDK/2.3 (go1.22)",
)


def _ip(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.25:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    return f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def generate_events(day: dt.date, count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``count`` events spread over the UTC ``day``, in (created_at, id) order."""
    rng = random.Random(f"{seed}:{day.isoformat()}")
    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    offsets = sorted(rng.randrange(86_400_000_000) for _ in range(count))
    for n, offset in enumerate(offsets):
        event_type, actor_type, resource_type = EVENT_TYPES[rng.randrange(len(EVENT_TYPES))]
        user = rng.randrange(5_000)
        tenant = f"ten_{rng.randrange(20):04d}"
        actor_id = None if actor_type == "system" else f"{actor_type[:3]}_{user:08d}"
        email = None
        if actor_type in ("user", "admin"):
            email = f"{FIRST[user % len(FIRST)]}.{LAST[user % len(LAST)]}@{DOMAINS[user % len(DOMAINS)]}"
        failed = event_type.endswith("_failed") or rng.random() < 0.03
        metadata: dict[str, Any] = {"user_agent": AGENTS[rng.randrange(len(AGENTS))], "request_id": f"req_{rng.getrandbits(64):016x}"}
        if failed:
            metadata["reason"] = rng.choice(("invalid_password", "mfa_required", "account_locked"))
        if event_type == "tenant.settings_updated":
            metadata["changed"] = {"session_ttl": [3600, 7200], "mfa": {"required": True}}
        if rng.random() < 0.1:
            metadata["attempt"] = rng.randrange(1, 10)
        yield {
            "id": f"alog_{day:%Y%m%d}{n:07d}{rng.getrandbits(32):08x}",
            "type": event_type,
            "actor_id": actor_id,
            "actor_email": email,
            "actor_type": actor_type,
            "resource_id": f"{resource_type[:3]}_{rng.getrandbits(40):010x}",
            "resource_type": resource_type,
            "tenant_id": tenant,
            "organization_id": f"org_{rng.randrange(200):05d}" if rng.random() < 0.8 else None,
            "ip_address": _ip(rng),
            "country": COUNTRIES[rng.randrange(len(COUNTRIES))],
            "result": "failure" if failed else "success",
            "created_at": start + dt.timedelta(microseconds=offset),
            "metadata": metadata,
        }
