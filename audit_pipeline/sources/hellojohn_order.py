"""Which received events to keep: each once, in ``(created_at, id)`` order, inside the range.

Both readers hand every event they receive to one :class:`OrderGuard`, which keeps the last
accepted ``(created_at, id)`` and answers:

* past the range's end: stop (events come oldest first, nothing later can be in range);
* before the range, or at or before the read's ``after`` position: skip;
* at or before the last accepted event and known to have been accepted (one of the recently
  accepted keys, or an id already accepted at the last accepted instant): skip, it is a repeat
  (a page overlapping the previous one, or a resumed export stream starting again at the
  instant where the previous one stopped);
* at or before the last accepted event and not known: an event out of order, which cannot be
  placed without loss once later events were handed on, so the read stops with an error;
* within one response, an event before the one just received is out of order too, even when
  it would otherwise be skipped as a repeat.

Memory is bounded by ``recent`` keys plus the ids sharing the last accepted instant.
"""

from __future__ import annotations

import collections
import enum
from typing import Any

from audit_pipeline.core.errors import SourceError
from audit_pipeline.core.isotime import format_instant
from audit_pipeline.core.isotime import from_epoch_micros as from_micros

Key = tuple[int, bytes]


class Verdict(enum.Enum):
    ACCEPT = "accept"
    SKIP = "skip"
    END = "end"


class RecentKeys:
    """The last few keys seen (events, cursors), in bounded memory."""

    def __init__(self, size: int) -> None:
        self._order: collections.deque[Any] = collections.deque()
        self._members: set[Any] = set()
        self._size = size

    def add(self, key: Any) -> None:
        self._order.append(key)
        self._members.add(key)
        if len(self._order) > self._size:
            self._members.discard(self._order.popleft())

    def __contains__(self, key: object) -> bool:
        return key in self._members


def _describe(key: Key) -> str:
    return f"{key[1].decode('utf-8', 'replace')!r} ({format_instant(from_micros(key[0]))})"


class OrderGuard:
    """Accepts events of ``[start, end)`` strictly after ``floor``, each once and in order."""

    def __init__(self, start: int, end: int, floor: Key | None, *, origin: str, recent: int = 1_000) -> None:
        self.start, self.end, self.floor = start, end, floor
        self.origin = origin
        #: The last accepted event; a resumed read starts again from its instant.
        self.last: Key | None = None
        self.accepted = 0
        self._recent = RecentKeys(recent)
        self._ids_at_last: set[bytes] = set()
        self._previous: Key | None = None

    def new_response(self) -> None:
        """A new page or stream begins: its own order is checked from its first event."""
        self._previous = None

    def judge(self, key: Key) -> Verdict:
        previous, self._previous = self._previous, key
        if key[0] >= self.end:
            return Verdict.END
        if previous is not None and key < previous:
            self._out_of_order(key, previous)
        if key[0] < self.start or (self.floor is not None and key <= self.floor):
            return Verdict.SKIP
        last = self.last
        if last is not None and key <= last:
            if key in self._recent or (key[0] == last[0] and key[1] in self._ids_at_last):
                return Verdict.SKIP
            self._out_of_order(key, last)
        if last is None or key[0] != last[0]:
            self._ids_at_last = set()
        self._ids_at_last.add(key[1])
        self._recent.add(key)
        self.last = key
        self.accepted += 1
        return Verdict.ACCEPT

    def _out_of_order(self, key: Key, before: Key) -> None:
        raise SourceError(
            f"{self.origin} listed event {_describe(key)} after {_describe(before)}: events must come oldest first, "
            "by (created_at, id); an event out of order cannot be exported without risking loss, so the read stopped"
        )
