"""One place that masks secrets in any text before it is shown, logged, stored or cut short.

Why one module: a secret can reach a message from many sides (a sink's answer echoing our
headers, a URL with a token in its query, an exception from a driver).  Every configured
secret and every ``${VAR}`` value is registered here when the configuration loads, and
every message that leaves the pipeline (errors, log lines, Dagster events and metadata,
dead-letter reasons) goes through :func:`redact` *before* any truncation, so a cut can
never leave a partial secret behind (:func:`excerpt` does the cutting, after masking).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

MASK = "***"

#: Shorter values are not registered: masking every "true" or "8080" would garble messages,
#: and such values are not secrets anyone could guess from a message anyway.
MIN_SECRET_LENGTH = 6
_NOT_SECRET = re.compile(r"[+-]?\d+(\.\d+)?|true|false|yes|no|on|off|null|none", re.IGNORECASE)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

# scheme://user:password@host -> scheme://user:***@host; scheme://token@host -> scheme://***@host
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/@\s:?#]*)(?::(?P<password>[^/@\s?#]*))?@")
# ?token=... &api_key=... ;signature=...  (names that carry credentials, in any case)
_SECRET_NAME = r"[A-Za-z0-9_.\-]*(?:token|key|secret|signature|sig|password|passwd|pwd|auth|credential)[A-Za-z0-9_.\-]*"  # noqa: S105 - a pattern of names, not a password
_QUERY = re.compile(rf"(?P<name>[?&;]{_SECRET_NAME})=(?P<value>[^&\s#\"'<>;,]+)", re.IGNORECASE)
# Authorization: Bearer x / DD-API-KEY: x / X-Splunk-Token: x, as a server may echo them back.
_HEADER = re.compile(
    r"(?P<name>\b(?:proxy-)?authorization|\b(?:[A-Za-z]+-)*(?:api-?key|[A-Za-z]+-(?:token|secret|key|signature)))(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>(?:(?:Bearer|Basic|Splunk|Token|ApiKey)\s+)?[^\s\"',;}]+)",
    re.IGNORECASE,
)


#: URL schemes whose user part names a database role, not a credential.
_DATABASE_SCHEMES = ("postgres", "mysql", "mariadb", "sqlite")


def _url_secrets(text: str) -> list[str] | None:
    """The secret parts of a URL (password, credential-named query values); None if not a URL."""
    parts = urlsplit(text)
    if not parts.scheme or not parts.netloc or any(c.isspace() for c in text):
        return None
    # A lone user in an HTTP(S) URL is usually a token (https://TOKEN@host); in a database URL it is the role's
    # name (postgresql://exporter@db), which masked everywhere would also mangle "postgresql" in messages.
    lone_user_is_secret = parts.password is None and "@" in parts.netloc and not parts.scheme.lower().startswith(_DATABASE_SCHEMES)
    found = [p for p in (parts.password, parts.username if lone_user_is_secret else None) if p]
    found += [v for k, v in parse_qsl(parts.query) if re.fullmatch(_SECRET_NAME, k, re.IGNORECASE) and v]
    return found


def register_secret(value: Any) -> None:
    """Mask ``value`` (and its URL-encoded forms) in every later :func:`redact`.

    A URL (a database URL given as a secret) registers only its password and credential
    query values, so messages can still name the host they could not reach."""
    global _pattern
    if value is None:
        return
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    text = str(value).strip()
    if len(text) < MIN_SECRET_LENGTH or _NOT_SECRET.fullmatch(text):
        return
    in_url = _url_secrets(text)
    if in_url is not None:
        for part in in_url:
            register_secret(unquote(part))
        return
    forms = {text, quote(text, safe=""), quote_plus(text)}
    # A PEM key or a multi-line secret is also masked line by line (messages may carry one line).
    forms.update(line.strip() for line in text.splitlines() if len(line.strip()) >= MIN_SECRET_LENGTH and not line.startswith("-----"))
    with _lock:
        if forms <= _secrets:
            return
        _secrets.update(forms)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first: a secret containing another is masked whole
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def forget_secrets() -> None:
    """Drop every registered secret (for tests, which load many configurations in one process)."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


def register_secrets(values: Iterable[Any]) -> None:
    for value in values:
        register_secret(value)


def _userinfo(match: re.Match[str]) -> str:
    if match.group("password") is not None:
        return f"{match.group('scheme')}{match.group('user')}:{MASK}@"
    if match.group("scheme").lower().startswith(_DATABASE_SCHEMES):
        return match.group(0)  # postgresql://exporter@db: a role name, not a credential
    return f"{match.group('scheme')}{MASK}@"


def redact(text: Any) -> str:
    """``text`` with every registered secret, URL password, credential-named query parameter
    and credential header value replaced by ``***``."""
    text = str(text)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _USERINFO.sub(_userinfo, text)
    text = _QUERY.sub(lambda m: f"{m.group('name')}={MASK}", text)
    return _HEADER.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", text)


def excerpt(text: str, limit: int = 200) -> str:
    """The start of ``text`` for a message: redacted first, then cut, so no partial secret survives."""
    cleaned = " ".join(redact(text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's final message (args included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction(*loggers: logging.Logger) -> None:
    """Redact every record handled by the given loggers' handlers (default: the root logger's)."""
    for logger in loggers or (logging.getLogger(),):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
