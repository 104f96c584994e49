"""The entry chain's definition, and exact canonical lines re-derived from CSV and Parquet."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audit_pipeline.core.jsontext import jsonb_text
from audit_pipeline.core.schema import ARROW_SCHEMA
from audit_pipeline.formats.encoding import CSV_HEADER, encode_csv, encode_ndjson, encode_ndjson_lines
from audit_pipeline.formats.writers import open_parquet_writer
from audit_pipeline.integrity.canonical import CanonicalError, csv_chunks, literal_apostrophe_cells, ndjson_chunks, parquet_chunks
from audit_pipeline.integrity.chain import GENESIS, EntryChain, chain_lines, line_offsets, split_lines
from audit_pipeline.sources.synthetic import generate_events

UTC = dt.UTC


def _batch(events: list[dict]) -> pa.RecordBatch:
    rows = [{**e, "metadata": e["metadata"] if isinstance(e["metadata"], str) else jsonb_text(e["metadata"])} for e in events]
    return pa.RecordBatch.from_pylist(rows, schema=ARROW_SCHEMA)


def _event(i: int, **values) -> dict:
    base = {
        "id": f"alog_{i:04d}",
        "type": "user.login",
        "actor_id": None,
        "actor_email": None,
        "actor_type": "user",
        "resource_id": None,
        "resource_type": None,
        "tenant_id": "ten_1",
        "organization_id": None,
        "ip_address": None,
        "country": None,
        "result": "success",
        "created_at": dt.datetime(2024, 1, 15, 0, 0, i, 123456, tzinfo=UTC),
        "metadata": {},
    }
    base.update(values)
    return base


#: Values that stress the CSV round trip: formula starts, literal apostrophes, quotes, NULL vs "", newlines.
TRICKY = [
    _event(0, actor_email='=HYPERLINK("x")', resource_id="+1", tenant_id="-5", organization_id="@home"),
    _event(1, actor_email="'=already quoted", resource_id="'+literal, with comma", country="'@"),
    _event(2, actor_email="", resource_id=None, ip_address="a,b", organization_id='say "hi"'),
    _event(3, actor_email="line\nbreak\r\nand CR", resource_id="\tTab start", tenant_id="\rCR start"),
    _event(4, actor_email="'\ttab after quote", resource_id="zoë ünïcødé", metadata={"reason": "=cmd", "n": [1, 2.5], "q": "'=x"}),
    _event(5, actor_email="NULL", resource_id="null", metadata="-5"),
    _event(6, actor_email="'", resource_id="''=", metadata='"=string json"'),
]


def test_chain_is_sha256_of_previous_hash_and_line_with_newline():
    batch = _batch(list(generate_events(dt.date(2024, 1, 15), 250)))
    chunk = encode_ndjson(batch)
    lines = bytes(chunk).splitlines(keepends=True)
    assert len(lines) == 250 and all(line.endswith(b"\n") for line in lines)
    expected = GENESIS
    for line in lines:
        expected = hashlib.sha256(expected + line).digest()
    chain = EntryChain(GENESIS, checkpoint_rows=100)
    chain.update(chunk)
    assert chain.head == expected == chain_lines(lines, GENESIS)
    assert chain.rows == 250
    assert chain.checkpoints == [chain_lines(lines[:100], GENESIS).hex(), chain_lines(lines[:200], GENESIS).hex()]
    assert chain.events_sha256 == hashlib.sha256(bytes(chunk)).hexdigest()
    # The newline is part of the hashed bytes: hashing lines without it gives another head.
    assert chain_lines([line[:-1] for line in lines], GENESIS) != chain.head


@pytest.mark.parametrize("cuts", [[1], [37, 99, 100, 101], [5 * i for i in range(1, 50)]])
def test_chain_does_not_depend_on_chunking(cuts):
    chunk = bytes(encode_ndjson(_batch(list(generate_events(dt.date(2024, 1, 16), 250)))))
    lines = chunk.splitlines(keepends=True)
    whole = EntryChain(b"\x07" * 32, checkpoint_rows=100)
    whole.update(chunk)
    pieces = EntryChain(b"\x07" * 32, checkpoint_rows=100)
    bounds = [0, *cuts, len(lines)]
    for a, b in itertools.pairwise(bounds):
        pieces.update(b"".join(lines[a:b]))
    assert (pieces.head, pieces.rows, pieces.checkpoints, pieces.events_sha256) == (whole.head, whole.rows, whole.checkpoints, whole.events_sha256)
    assert whole.seed == b"\x07" * 32 and whole.head != EntryChain(GENESIS).head


def test_the_encoder_reports_every_line_start_and_a_chain_may_adopt_the_file_hash():
    batch = _batch(TRICKY)
    offsets, chunk = encode_ndjson_lines(batch)
    assert bytes(chunk) == bytes(encode_ndjson(batch))
    assert offsets.tolist() == line_offsets(chunk) and len(offsets) == batch.num_rows + 1
    hashing, adopting = EntryChain(GENESIS, checkpoint_rows=2), EntryChain(GENESIS, checkpoint_rows=2, hash_events=False)
    hashing.update(chunk)
    adopting.update(chunk, offsets)
    with pytest.raises(ValueError, match="adopt_events_sha256"):
        _ = adopting.events_sha256  # never a silent empty digest
    adopting.adopt_events_sha256(hashlib.sha256(bytes(chunk)).hexdigest())
    assert (adopting.head, adopting.checkpoints, adopting.events_sha256) == (hashing.head, hashing.checkpoints, hashing.events_sha256)
    with pytest.raises(ValueError):
        hashing.adopt_events_sha256("00" * 32)


def test_last_line_without_newline_is_still_an_event():
    assert line_offsets(b'{"a":1}\n{"b":2}') == [0, 8, 15]
    assert split_lines(b'{"a":1}\n{"b":2}') == [b'{"a":1}\n', b'{"b":2}']
    assert list(ndjson_chunks(io.BytesIO(b"x\n" * 5 + b"tail"))) == [b"x\n" * 5, b"tail"]


def test_literal_apostrophe_cells_are_found_exactly():
    chunk = encode_ndjson(_batch(TRICKY))
    cells = literal_apostrophe_cells(chunk, line_offsets(chunk), first_row=11)
    # Event 1 (the 12th overall) has three literal '=, '+ and '@ values; event 4 a ' before a tab; metadata never counts.
    assert cells == [(12, "actor_email"), (12, "resource_id"), (12, "country"), (15, "actor_email")]


def _literal_cells_by_definition(ndjson: bytes, first_row: int) -> list[tuple[int, str]]:
    """The definition, event by event: a string value of a plain column that starts with ' and a formula character."""
    found = []
    for row, line in enumerate(ndjson.splitlines()):
        for name, value in json.loads(line).items():
            if name in ("created_at", "metadata") or not isinstance(value, str):
                continue
            if len(value) > 1 and value[0] == "'" and value[1] in "=+-@\t\r":
                found.append((first_row + row, name))
    return found


def test_literal_apostrophe_cells_match_their_definition_on_random_values():
    # Values built from the characters that matter (quotes, apostrophes, colons, formula characters,
    # backslashes, tabs), in every text column, so the byte scan meets each neighbour it could confuse.
    rng = random.Random(7)
    alphabet = ["'", '"', ":", "=", "+", "-", "@", "\\", "\t", "\r", "t", "r", "a", " ", ","]
    columns = ["actor_email", "actor_id", "resource_id", "country", "type", "result"]

    def value() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))

    start = dt.datetime(2024, 1, 15, tzinfo=UTC)
    events = [_event(0, **{c: value() for c in columns}, metadata={"note": value()}, created_at=start + dt.timedelta(seconds=i)) for i in range(600)]
    ndjson = bytes(encode_ndjson(_batch(events)))
    expected = _literal_cells_by_definition(ndjson, 5)
    assert len(expected) > 20  # the draw reaches the case under test
    assert sorted(literal_apostrophe_cells(ndjson, line_offsets(ndjson), 5)) == sorted(expected)


@pytest.mark.parametrize("protection", [True, False])
def test_csv_rederives_the_exact_ndjson_lines(protection):
    batch = _batch(TRICKY + list(generate_events(dt.date(2024, 1, 15), 40)))
    ndjson = bytes(encode_ndjson(batch))
    literal = literal_apostrophe_cells(ndjson, line_offsets(ndjson), 1)
    cells: dict[int, list[str]] = {}
    for row, name in literal:
        cells.setdefault(row, []).append(name)
    csv_bytes = CSV_HEADER + bytes(encode_csv(batch, protection))
    derived = b"".join(bytes(c) for c in csv_chunks(io.BytesIO(csv_bytes), protection, cells))
    assert derived == ndjson
    if protection:
        # Without the manifest's list of literal apostrophes the round trip would lose them.
        naive = b"".join(bytes(c) for c in csv_chunks(io.BytesIO(csv_bytes), protection, {}))
        assert naive != ndjson
        assert json.loads(naive.splitlines()[1])["actor_email"] == "=already quoted"


def test_parquet_rederives_the_exact_ndjson_lines():
    batch = _batch(TRICKY + list(generate_events(dt.date(2024, 1, 15), 40)))
    buffer = io.BytesIO()
    writer = open_parquet_writer(buffer)
    writer.write_batch(batch)
    writer.close()
    buffer.seek(0)
    assert b"".join(bytes(c) for c in parquet_chunks(buffer)) == bytes(encode_ndjson(batch))


def test_a_day_without_events_has_no_lines_in_any_format():
    assert list(csv_chunks(io.BytesIO(CSV_HEADER), True, {})) == []
    assert list(ndjson_chunks(io.BytesIO(b""))) == []
    buffer = io.BytesIO()
    open_parquet_writer(buffer).close()
    buffer.seek(0)
    assert list(parquet_chunks(buffer)) == []


def test_unreadable_objects_name_the_event():
    batch = _batch(TRICKY[:3])
    csv_bytes = CSV_HEADER + bytes(encode_csv(batch)).replace(b"2024-01-15T00:00:02.123456Z", b"yesterday")
    with pytest.raises(CanonicalError, match="created_at 'yesterday'") as info:
        list(csv_chunks(io.BytesIO(csv_bytes), True, {}))
    assert info.value.row == 3
    with pytest.raises(CanonicalError, match="header"):
        list(csv_chunks(io.BytesIO(b"id,type\r\n"), True, {}))
    other = io.BytesIO()
    pq.write_table(pa.table({"id": ["a"]}), other)
    other.seek(0)
    with pytest.raises(CanonicalError, match="schema"):
        list(parquet_chunks(other))
