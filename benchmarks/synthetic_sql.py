"""Synthetic audit_logs rows generated inside PostgreSQL, shared by the benchmarks.

Generating in SQL (``generate_series``) loads millions of rows in seconds, with the shapes of
real HelloJohn events: NULL actors, IPv4/IPv6, non-ASCII e-mails, nested metadata.
"""

from __future__ import annotations

from pathlib import Path

DDL = (Path(__file__).resolve().parents[1] / "audit_pipeline_tests" / "fixtures" / "audit_logs.sql").read_text()

_GENERATE = """
INSERT INTO audit_logs
SELECT 'alog_' || lpad(g::text, 10, '0') || substr(md5(g::text), 1, 16),
       (ARRAY['user.login','user.logout','user.login_failed','user.password_changed','org.member_added',
              'session.revoked','api_key.created','token.refreshed'])[1 + g % 8],
       CASE WHEN g % 13 = 0 THEN NULL ELSE 'usr_' || substr(md5((g % 50000)::text), 1, 24) END,
       CASE WHEN g % 13 = 0 THEN NULL ELSE (ARRAY['james','mary','wei','priya','zoë','josé'])[1 + g % 6] || '.'
            || (ARRAY['smith','garcia','nguyen','patel'])[1 + g % 4] || (g % 50000)::text || '@example.com' END,
       (ARRAY['user','admin','api_key','system'])[1 + g % 4],
       'ses_' || substr(md5((g * 7)::text), 1, 24),
       (ARRAY['session','user','organization','api_key'])[1 + g % 4],
       'ten_' || lpad((g % 40)::text, 4, '0'),
       CASE WHEN g % 5 = 0 THEN NULL ELSE 'org_' || lpad((g % 900)::text, 5, '0') END,
       CASE WHEN g % 20 = 0 THEN NULL WHEN g % 4 = 0 THEN ('2001:db8::' || to_hex(g % 65535))::inet
            ELSE ((g % 223 + 1)::text || '.' || (g % 251)::text || '.' || (g % 241)::text || '.' || (g % 239 + 1)::text)::inet END,
       (ARRAY['US','DE','FR','GB','IN','BR','JP'])[1 + g % 7],
       CASE WHEN g % 17 = 0 THEN 'failure' ELSE 'success' END,
       timestamptz '2024-01-15 00:00:00+00' + make_interval(secs => {offset}),
       jsonb_build_object('user_agent', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15',
                          'request_id', md5(g::text), 'attempt', g % 7{extra})
FROM generate_series(1, {n}) AS g
"""


def generate_sql(rows: int, *, days: int = 1, same_timestamp: int = 1, geo: bool = False) -> str:
    """INSERT of ``rows`` events spread over ``days`` UTC days from 2024-01-15, ``same_timestamp`` events sharing each time."""
    n = int(rows)
    if same_timestamp > 1:
        offset = f"floor(g / {int(same_timestamp)})::float8 * {int(same_timestamp)} * {int(days)} * 86399.0 / {n}"
    else:
        offset = f"(g::float8 / {n}) * {int(days)} * 86399.999"
    extra = ", 'geo', jsonb_build_object('lat', 52.52, 'lon', 13.405)" if geo else ""
    return _GENERATE.format(n=n, offset=offset, extra=extra)
