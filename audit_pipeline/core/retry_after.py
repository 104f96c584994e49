"""``Retry-After``, read once for every HTTP client here (sinks and the HelloJohn API source).

RFC 9110 allows delta-seconds or an HTTP-date; some servers send a decimal number.  A value that is
none of these, or negative, is ignored (None), so a malformed header falls back to the caller's backoff.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (``"120"``, ``"1.5"`` or ``"Wed, 21 Oct 2015 07:28:00 GMT"``)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())
