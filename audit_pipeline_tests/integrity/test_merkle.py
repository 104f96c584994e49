"""RFC 6962 Merkle trees: our prover and our offline verifier against two independent implementations.

- transparency-dev/merkle's published probes (``rfc6962_vectors.json``: the Go reference's
  ``testdata/inclusion`` and ``testdata/consistency``, data only) run through our verifier;
- ``pymerkle`` builds the same trees: its roots and its inclusion paths must match ours, and our
  verifier must accept its paths.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from pathlib import Path

import pymerkle
import pytest

from audit_pipeline.integrity.merkle import EMPTY_ROOT, MemoryTree, consistency_path, inclusion_path, leaf_hash, leaf_hashes, node_hash, perfect_root, root_of
from audit_pipeline.integrity.proof_verify import ProofError, verify_consistency, verify_inclusion
from audit_pipeline.integrity.tiles import TileReader, TileWriter
from audit_pipeline.integrity.treehash import level_up, subtree_roots
from audit_pipeline.storage.object_store import ObjectStore

VECTORS = json.loads((Path(__file__).parent / "rfc6962_vectors.json").read_text())


def _b64(values: list[str] | None) -> list[bytes]:
    return [base64.b64decode(v) for v in values or []]


def test_hashes_match_rfc6962_reference_values() -> None:
    # The Go reference's rfc6962_test.go values.
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"


@pytest.mark.parametrize("probe", VECTORS["inclusion"], ids=lambda p: p["file"])
def test_inclusion_probes_of_the_go_reference(probe: dict) -> None:
    def check() -> None:
        verify_inclusion(
            probe["leafIdx"], probe["treeSize"], base64.b64decode(probe["leafHash"] or ""), _b64(probe["proof"]), base64.b64decode(probe["root"] or "")
        )

    if probe["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


@pytest.mark.parametrize("probe", VECTORS["consistency"], ids=lambda p: p["file"])
def test_consistency_probes_of_the_go_reference(probe: dict) -> None:
    def check() -> None:
        verify_consistency(probe["size1"], probe["size2"], _b64(probe["proof"]), base64.b64decode(probe["root1"] or ""), base64.b64decode(probe["root2"] or ""))

    if probe["wantErr"]:
        with pytest.raises(ProofError):
            check()
    else:
        check()


def _entries(n: int) -> list[bytes]:
    return [f'{{"id":"e{i}","n":{i * i}}}\n'.encode() for i in range(n)]


def test_roots_and_inclusion_paths_agree_with_pymerkle() -> None:
    entries = _entries(70)
    theirs = pymerkle.InmemoryTree(algorithm="sha256")
    for entry in entries:
        theirs.append_entry(entry)
    ours = MemoryTree(entries)
    for size in range(1, len(entries) + 1):
        root = theirs.get_root(size)
        assert ours.root(size) == root == root_of([leaf_hash(e) for e in entries[:size]])
        for index in range(size):
            their_path = theirs.prove_inclusion(index + 1, size).path[1:]  # pymerkle: leaf first, 1-based index
            assert inclusion_path(ours, index, size) == their_path
            verify_inclusion(index, size, leaf_hash(entries[index]), their_path, root)


def test_consistency_paths_verify_between_every_pair_of_pymerkle_roots() -> None:
    entries = _entries(40)
    theirs = pymerkle.InmemoryTree(algorithm="sha256")
    for entry in entries:
        theirs.append_entry(entry)
    ours = MemoryTree(entries)
    for old in range(1, len(entries) + 1):
        for new in range(old, len(entries) + 1):
            path = consistency_path(ours, old, new)
            verify_consistency(old, new, path, theirs.get_root(old), theirs.get_root(new))
            theirs.prove_consistency(old, new).verify(theirs.get_root(old), theirs.get_root(new))


def test_a_changed_entry_breaks_inclusion_and_consistency() -> None:
    entries = _entries(13)
    tree = MemoryTree(entries)
    forged = MemoryTree([*entries[:5], b'{"id":"e5","n":0}\n', *entries[6:]])
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(5, 13, leaf_hash(b'{"id":"e5","n":0}\n'), inclusion_path(tree, 5, 13), tree.root())
    with pytest.raises(ProofError, match="does not lead to the root"):
        verify_inclusion(4, 13, leaf_hash(entries[4]), inclusion_path(forged, 4, 13), tree.root())
    with pytest.raises(ProofError, match="not a prefix"):
        verify_consistency(8, 13, consistency_path(forged, 8, 13), tree.root(8), forged.root(13))
    with pytest.raises(ProofError, match="rolled back"):
        verify_consistency(13, 8, [], tree.root(13), tree.root(8))


def test_leaf_hashes_of_a_chunk_are_the_hashes_of_its_lines() -> None:
    lines = _entries(9)
    chunk = b"".join(lines)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    digests = leaf_hashes(memoryview(chunk), offsets)
    assert digests == b"".join(hashlib.sha256(b"\x00" + line).digest() for line in lines)


def test_a_level_at_once_matches_the_pairwise_definition() -> None:
    hashes = [hashlib.sha256(str(i).encode()).digest() for i in range(64)]
    assert level_up(b"".join(hashes)) == b"".join(node_hash(hashes[i], hashes[i + 1]) for i in range(0, 64, 2))
    assert subtree_roots(b"".join(hashes), 3) == b"".join(root_of(hashes[i : i + 8]) for i in range(0, 64, 8))
    assert perfect_root(b"".join(hashes)) == root_of(hashes)
    with pytest.raises(ValueError, match="do not pair up"):
        level_up(b"".join(hashes[:3]))
    with pytest.raises(ValueError, match="not a perfect subtree"):
        perfect_root(b"".join(hashes[:6]))


@pytest.mark.parametrize("blocks", [[70_000], [1, 255, 3000, 66_000, 744], [65_536, 1, 4463]])
def test_tiles_written_a_block_at_a_time_hold_the_tree_pymerkle_builds(tmp_path: Path, blocks: list[int]) -> None:
    # 70,000 leaves: full level-0 and level-1 tiles and a level-2 tile; appended in uneven blocks across calls and logs.
    entries = [f'{{"id":"e{i}"}}\n'.encode() for i in range(sum(blocks))]
    theirs = pymerkle.InmemoryTree(algorithm="sha256")
    for entry in entries:
        theirs.append_entry(entry)
    store = ObjectStore(str(tmp_path / "exports"))
    size = 0
    for block in blocks:
        writer = TileWriter(TileReader(store, "tlog", size), lambda key, data: store.put_bytes(key, data, "application/octet-stream"))
        writer.append(
            leaf_hashes(b"".join(entries[size : size + block]), list(itertools.accumulate((len(e) for e in entries[size : size + block]), initial=0)))
        )
        size += block
        assert writer.finish() == theirs.get_root(size)
    assert (tmp_path / "exports/tlog/tile/1/000").stat().st_size == 8192
    assert (tmp_path / "exports/tlog/tile/2/000.p/1").stat().st_size == 32
    reader = TileReader(store, "tlog", size)
    for index in (0, 255, 256, 65_535, 65_536, size - 1):
        assert inclusion_path(reader, index, size) == theirs.prove_inclusion(index + 1, size).path[1:]
    assert reader.node(16, 0) == theirs.get_root(65_536)


def test_tile_roots_computed_elsewhere_are_checked_before_use(tmp_path: Path) -> None:
    leaves = b"".join(leaf_hash(b"%d\n" % i) for i in range(600))
    store = ObjectStore(str(tmp_path / "exports"))
    right = subtree_roots(leaves[: 2 * 8192], 8)
    writer = TileWriter(TileReader(store, "tlog", 0), lambda key, data: None, (0, right))
    writer.append(leaves)
    assert writer.finish() == MemoryTree([b"%d\n" % i for i in range(600)]).root()
    wrong = TileWriter(TileReader(store, "tlog", 0), lambda key, data: None, (1, right))  # roots of other tiles
    with pytest.raises(ValueError, match="precomputed root of tile 0/1 does not match"):
        wrong.append(leaves)
