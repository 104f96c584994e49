"""What one sink may see of an event: fields dropped, hashed or masked, metadata keys allowed.

GDPR data minimisation per destination: a SIEM or a third party's webhook often must not
receive raw e-mails and IP addresses, while joins across events must still work.  A sink's
``privacy:`` section is applied to each Arrow batch *before* the sink builds its payload (and
before dead letters are written, so they hold what the sink would have received); the
exports, manifests and the integrity chain never pass through here and stay exact.

The transform is column-wise: hashing and masking run once per distinct value of a column in
the batch (``dictionary_encode``), not once per event, since e-mails and addresses repeat.

* ``drop: [fields]`` sends the field as ``null`` (``metadata`` as ``{}``): the value never leaves.
* ``hash: [fields]`` sends HMAC-SHA256(key, value) as 64 hex digits.  The key comes from the
  environment (``hash_key: ${AUDIT_PRIVACY_HASH_KEY}``); the same key gives the same token in
  every run and every sink, so a hashed e-mail still joins across events and systems.
* ``mask:`` ``actor_email: domain`` keeps only the part after ``@``; ``ip_address: 24`` (IPv4)
  or ``48`` (IPv6), or ``{ipv4: 24, ipv6: 48}``, keeps the network prefix as ``203.0.113.0/24``.
* ``metadata_keys: [keys]`` keeps only these keys of ``metadata``; a dotted key (``nested.email``)
  keeps that one entry of a nested object.

A value dropped, hashed or masked in its own field is treated the same way wherever ``metadata``
repeats it (any depth, as a value or as a key; e-mails and IP addresses compared case-insensitively):
otherwise the raw e-mail next to its token would reverse the hash.  Only whole strings are found:
``"login from 203.0.113.7"`` is not, so keep such keys out with ``metadata_keys``.

``id``, ``type``, ``result`` and ``created_at`` cannot be changed: positions, exactly-once
delivery, event filters and the dead-letter layout rely on them, and they carry no personal data.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from audit_pipeline.config.sections.privacy import IpPrefixes, PrivacySettings
from audit_pipeline.core.jsontext import jsonb_text, parse_exact
from audit_pipeline.core.schema import ARROW_SCHEMA, COLUMNS

__all__ = ["PrivacyFilter", "privacy_filter"]


# -- the transform ----------------------------------------------------------------------------------


def _per_distinct(column: pa.Array, fn: Callable[[str], str | None]) -> pa.Array:
    """Apply ``fn`` once per distinct non-null value of a string column; nulls stay null."""
    encoded = column.dictionary_encode()
    mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return mapped.take(encoded.indices)


def hmac_hex(key: bytes) -> Callable[[str], str]:
    """HMAC-SHA256 as hex; the keyed state is set up once and copied per value (twice as fast as ``hmac.new``)."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def token(value: str) -> str:
        state = keyed.copy()
        state.update(value.encode("utf-8"))
        return state.hexdigest()

    return token


def email_domain(value: str) -> str | None:
    """``alice@example.com`` → ``example.com``; a value without ``@`` has no domain to keep."""
    _, at, domain = value.rpartition("@")
    return domain.lower() if at and domain else None


def ip_network(prefixes: IpPrefixes) -> Callable[[str], str | None]:
    """An address (PostgreSQL inet text, netmask allowed) → its network at the configured prefix, e.g. ``203.0.113.0/24``.

    ``socket.inet_pton``/``inet_ntop`` (C) rather than :mod:`ipaddress`, which is ten times slower per value.
    """

    def network(value: str) -> str | None:
        address, _, length = value.strip().partition("/")
        family, bits, wanted = (socket.AF_INET6, 128, prefixes.ipv6) if ":" in address else (socket.AF_INET, 32, prefixes.ipv4)
        try:
            packed = socket.inet_pton(family, address)
            own = int(length) if length else bits
        except (OSError, ValueError):
            return None  # not an address: nothing can be kept safely
        if not 0 <= own <= bits:
            return None
        prefix = min(wanted, own)
        kept = int.from_bytes(packed, "big") & (((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1))
        return f"{socket.inet_ntop(family, kept.to_bytes(bits // 8, 'big'))}/{prefix}"

    return network


#: A ``metadata_keys`` entry compiled into a tree: a key maps to None (keep its value whole) or to the
#: entries kept of the object under it (``nested.email`` → ``{"nested": {"email": None}}``).
KeyTree = dict[str, "KeyTree | None"]


def key_tree(paths: tuple[str, ...]) -> KeyTree:
    """``metadata_keys`` (dotted paths, checked when the settings loaded) as a :data:`KeyTree`."""
    tree: KeyTree = {}
    for path in paths:
        *parents, leaf = path.split(".")
        node: KeyTree | None = tree
        for part in parents:
            if node is None:
                break  # a shorter path keeps this whole value already
            if part not in node:
                node[part] = {}
            node = node[part]
        if node is not None:
            node[leaf] = None
    return tree


def _kept(value: dict[str, Any], tree: KeyTree) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, below in tree.items():
        if key not in value:
            continue
        if below is None:
            kept[key] = value[key]
        elif isinstance(value[key], dict):
            inner = _kept(value[key], below)
            if inner:  # a parent none of whose listed entries exists is not sent as an empty object
                kept[key] = inner
    return kept


def keep_metadata_keys(allowed: frozenset[str] | tuple[str, ...]) -> Callable[[str], str]:
    """JSON object text → the same object with only the ``allowed`` entries (jsonb text form when changed)."""
    tree = key_tree(tuple(sorted(allowed)))
    flat = all(below is None for below in tree.values())

    def keep(text: str) -> str:
        value = orjson.loads(text)
        if not isinstance(value, dict):
            return "{}"
        if flat and all(k in tree for k in value):
            return text
        kept = _kept(value, tree)
        if kept == value:
            return text
        if _has_float(kept):  # orjson rounds decimals and big integers: kept values keep every digit this way
            kept = _kept(parse_exact(text), tree)
        return _flat_jsonb_text(kept)

    return keep


#: Fields whose values are compared with metadata strings case-insensitively (``Ann@Example.com``, IPv6 hex digits).
_CASELESS = frozenset({"actor_email", "ip_address"})
#: What a repeated value becomes in metadata: the field's treated value, or _REMOVE (``drop``).
_REMOVE = object()


def scrub_repeats(text: str, repeats: list[tuple[str, bool, object]]) -> str:
    """``metadata`` text with every string equal to a protected field's raw value replaced by its treated value.

    ``repeats``: (raw value, compare case-insensitively, replacement or :data:`_REMOVE`).  The raw
    value is searched in the text first, so that metadata which does not repeat it is not parsed.
    """
    folded: str | None = None
    wanted: list[tuple[str, bool, object]] = []
    escapes = "\\" in text  # an escaped character could hide a value from the plain search: parse
    for raw, caseless, replacement in repeats:
        if caseless:
            folded = text.casefold() if folded is None else folded
            found = raw.casefold() in folded
        else:
            found = raw in text
        if found or escapes:
            wanted.append((raw.casefold() if caseless else raw, caseless, replacement))
    if not wanted:
        return text
    value = orjson.loads(text)
    changed, scrubbed = _scrub(value, wanted)
    if not changed:
        return text
    if _has_float(value):  # orjson rounds decimals and big integers: every other digit is kept this way
        changed, scrubbed = _scrub(parse_exact(text), wanted)
    return "{}" if scrubbed is _REMOVE else _flat_jsonb_text(scrubbed)


def _jsonb_fast(value: Any) -> str:
    """:func:`jsonb_text` for strings, 64-bit integers, booleans, nulls, lists and objects, with orjson (several
    times faster); raises TypeError for anything else."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(orjson.dumps(k).decode() + ": " + _jsonb_fast(value[k]) for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_fast(v) for v in value) + "]"
    if not isinstance(value, _SCALARS):
        raise TypeError(type(value).__name__)
    return orjson.dumps(value).decode()


_NOT_REPEATED = object()


def _replacement(item: str, wanted: list[tuple[str, bool, object]]) -> object:
    """What a metadata string becomes, or :data:`_NOT_REPEATED` when it repeats no protected value."""
    for raw, caseless, replacement in wanted:
        if (item.casefold() if caseless else item) == raw:
            return replacement
    return _NOT_REPEATED


def _scrub(value: Any, wanted: list[tuple[str, bool, object]]) -> tuple[bool, Any]:
    """(changed, value with repeated strings replaced; :data:`_REMOVE` for a dropped one) at any depth."""
    if isinstance(value, str):
        found = _replacement(value, wanted)
        return (False, value) if found is _NOT_REPEATED else (True, found)
    if isinstance(value, list):
        items = [_scrub(v, wanted) for v in value]
        if not any(c for c, _ in items):
            return False, value
        return True, [v for _, v in items if v is not _REMOVE]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            item_changed, item = _scrub(item, wanted)
            new_key = _replacement(key, wanted)
            if new_key is _NOT_REPEATED:
                new_key = key
            else:
                changed = True
            changed = changed or item_changed
            if item is _REMOVE or not isinstance(new_key, str):  # dropped, or a key masked to nothing
                continue
            out[new_key] = item
        return (True, out) if changed else (False, value)
    return False, value


_SCALARS = (str, int, bool, type(None))


def _flat_jsonb_text(value: Any) -> str:
    """:func:`jsonb_text`, several times faster for what orjson writes exactly (strings, 64-bit integers, booleans, nulls)."""
    try:
        return _jsonb_fast(value)
    except TypeError:  # Decimal (kept digits) or an integer beyond 64 bits: the exact, slower writer
        return jsonb_text(value)


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


class PrivacyFilter:
    """A sink's privacy settings compiled into a batch → batch function (same schema, same rows)."""

    def __init__(self, settings: PrivacySettings) -> None:
        self.settings = settings
        plan: dict[str, Callable[[pa.Array], pa.Array]] = {}
        for name in settings.drop:
            plan[name] = _empty_metadata if name == "metadata" else _nulls
        if settings.hash:
            assert settings.hash_key is not None  # checked when the settings loaded
            token = hmac_hex(settings.hash_key.get_secret_value().encode())
            for name in settings.hash:
                plan[name] = _mapped(token)
        if settings.mask.actor_email == "domain":
            plan["actor_email"] = _mapped(email_domain)
        if settings.mask.ip_address is not None:
            plan["ip_address"] = _ip_networks(settings.mask.ip_address)
        if settings.metadata_keys is not None:
            plan["metadata"] = _each(keep_metadata_keys(settings.metadata_keys))
        self.plan = plan
        #: Fields whose raw values must not survive in metadata either (nothing to scrub once metadata is dropped).
        self.repeated = () if "metadata" in settings.drop else tuple(name for name in COLUMNS if name in plan and name != "metadata")

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if not self.plan or batch.num_rows == 0:
            return batch
        columns = [self.plan[name](batch.column(i)) if name in self.plan else batch.column(i) for i, name in enumerate(COLUMNS)]
        if self.repeated:
            columns[_METADATA] = self._scrub_metadata(batch, columns)
        return pa.RecordBatch.from_arrays(columns, schema=ARROW_SCHEMA)

    def _scrub_metadata(self, batch: pa.RecordBatch, treated: list[pa.Array]) -> pa.Array:
        """The metadata column with each event's protected values treated where they repeat inside it."""
        fields = [
            (batch.column(COLUMNS.index(n)).to_pylist(), treated[COLUMNS.index(n)].to_pylist(), n in _CASELESS, n in self.settings.drop) for n in self.repeated
        ]
        metadata = treated[_METADATA].to_pylist()
        out: list[str | None] = []
        for i, text in enumerate(metadata):
            repeats = [(raw[i], caseless, _REMOVE if dropped else new[i]) for raw, new, caseless, dropped in fields if raw[i]]
            out.append(scrub_repeats(text, repeats) if text is not None and repeats else text)
        return pa.array(out, pa.string())


_METADATA = COLUMNS.index("metadata")


def _nulls(column: pa.Array) -> pa.Array:
    return pa.nulls(len(column), pa.string())


def _empty_metadata(column: pa.Array) -> pa.Array:
    return pa.array(["{}"] * len(column), pa.string())


def _mapped(fn: Callable[[str], str | None]) -> Callable[[pa.Array], pa.Array]:
    def apply(column: pa.Array) -> pa.Array:
        if column.null_count == len(column):
            return column
        return _per_distinct(column, fn)

    return apply


_PLAIN_IPV4 = r"^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$"


def _ip_networks(prefixes: IpPrefixes) -> Callable[[pa.Array], pa.Array]:
    """Plain IPv4 addresses in Arrow/numpy arithmetic; IPv6, netmasks and oddities once per distinct value."""
    slow = _mapped(ip_network(prefixes))
    keep = np.uint32((0xFFFFFFFF << (32 - prefixes.ipv4)) & 0xFFFFFFFF)

    def apply(column: pa.Array) -> pa.Array:
        plain = pc.fill_null(pc.match_substring_regex(column, _PLAIN_IPV4), False).to_numpy(zero_copy_only=False)
        if not plain.any():
            return slow(column)
        octets = pc.list_flatten(pc.split_pattern(column.filter(pa.array(plain)), ".")).cast(pa.int64()).to_numpy().reshape(-1, 4)
        if (octets > 255).any():
            return slow(column)  # not addresses after all: the exact path decides
        address = ((octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]).astype(np.uint32) & keep
        parts = [pa.array((address >> shift) & 0xFF).cast(pa.string()) for shift in (24, 16, 8, 0)]
        fast = pc.binary_join_element_wise(*parts, ".")
        fast = pc.binary_join_element_wise(fast, f"{prefixes.ipv4}", "/")
        where = np.flatnonzero(plain)
        others = np.flatnonzero(~plain)
        rest = slow(column.take(pa.array(others))) if len(others) else pa.array([], pa.string())
        order = np.empty(len(column), dtype=np.int64)
        order[where] = np.arange(len(where))
        order[others] = len(where) + np.arange(len(others))
        return pa.concat_arrays([fast.cast(pa.string()), rest.cast(pa.string())]).take(pa.array(order))

    return apply


def _each(fn: Callable[[str], str]) -> Callable[[pa.Array], pa.Array]:
    """Per value, for columns whose values rarely repeat (metadata): no dictionary to build."""

    def apply(column: pa.Array) -> pa.Array:
        return pa.array([None if v is None else fn(v) for v in column.to_pylist()], pa.string())

    return apply


def privacy_filter(settings: PrivacySettings | None) -> Callable[[pa.RecordBatch], pa.RecordBatch] | None:
    """The transform for a sink's settings, or None when the sink receives events as exported."""
    if settings is None or settings.is_empty:
        return None
    return PrivacyFilter(settings)
