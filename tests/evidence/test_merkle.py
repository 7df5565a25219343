"""Merkle hashing and proofs against the published RFC 6962 vectors (see vectors_rfc6962.py)."""

from __future__ import annotations

import pytest

from missions.evidence import merkle
from missions.evidence.merkle import (
    LeafSource,
    MerkleFrontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from tests.evidence import vectors_rfc6962 as v

LEAF_HASHES = [leaf_hash(d) for d in v.LEAVES]


def test_hasher_vectors() -> None:
    assert tree_root([]) == v.EMPTY_ROOT
    assert leaf_hash(b"") == v.EMPTY_LEAF_HASH
    assert leaf_hash(b"L123456") == v.LEAF_L123456_HASH
    assert node_hash(b"N123", b"N456") == v.NODE_N123_N456_HASH


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_for_sizes_1_to_8(size: int) -> None:
    assert tree_root(LEAF_HASHES, size) == v.ROOTS[size - 1]


def test_frontier_root_matches_every_size_and_round_trips() -> None:
    frontier = MerkleFrontier()
    for size, leaf in enumerate(LEAF_HASHES, 1):
        frontier.append(leaf)
        assert frontier.root() == v.ROOTS[size - 1]
        rebuilt = MerkleFrontier.from_list(frontier.size, frontier.to_list())
        assert rebuilt.root() == v.ROOTS[size - 1]
    with pytest.raises(ValueError):
        MerkleFrontier.from_list(7, frontier.to_list())


@pytest.mark.parametrize("number,size,proof", v.INCLUSION_PROOFS[1:])
def test_inclusion_proof_generation_and_verification(number: int, size: int, proof: list[bytes]) -> None:
    index = number - 1
    assert inclusion_proof(LEAF_HASHES, index, size) == proof
    assert root_from_inclusion_proof(index, size, LEAF_HASHES[index], proof) == v.ROOTS[size - 1]
    verify_inclusion(index, size, LEAF_HASHES[index], proof, v.ROOTS[size - 1])


def _corrupt_inclusion(index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes):  # type: ignore[no-untyped-def]
    """The probes of the reference test (proof/verify_test.go corruptInclusionProof)."""
    probes = [
        ("leafIndex - 1", index - 1, size, root, leaf, proof),
        ("leafIndex + 1", index + 1, size, root, leaf, proof),
        ("leafIndex ^ 2", index ^ 2, size, root, leaf, proof),
        ("treeSize * 2", index, size * 2, root, leaf, proof),
        ("treeSize / 2", index, size // 2, root, leaf, proof),
        ("wrong leaf", index, size, root, b"WrongLeaf", proof),
        ("empty root", index, size, v.EMPTY_ROOT, leaf, proof),
        ("random root", index, size, v.SOME_HASH, leaf, proof),
        ("trailing garbage", index, size, root, leaf, [*proof, b""]),
        ("trailing root", index, size, root, leaf, [*proof, root]),
        ("preceding garbage", index, size, root, leaf, [b"", *proof]),
        ("preceding root", index, size, root, leaf, [root, *proof]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 8]) + wrong[i][1:]
        probes.append((f"modified proof[{i}] bit 3", index, size, root, leaf, wrong))
    if proof:
        probes.append(("removed component", index, size, root, leaf, proof[:-1]))
    if len(proof) > 1:
        probes.append(("inserted component", index, size, root, leaf, [proof[0], v.SOME_HASH, *proof[1:]]))
    return probes


@pytest.mark.parametrize("number,size,proof", v.INCLUSION_PROOFS[1:])
def test_corrupted_inclusion_proofs_fail(number: int, size: int, proof: list[bytes]) -> None:
    index = number - 1
    for desc, i, n, root, leaf, path in _corrupt_inclusion(index, size, proof, v.ROOTS[size - 1], LEAF_HASHES[index]):
        with pytest.raises(ProofError):
            verify_inclusion(i, n, leaf, path, root)
            pytest.fail(f"verified a corrupted proof: {desc}")


def test_inclusion_invalid_path_and_probes_fail() -> None:
    number, size, proof = v.INCLUSION_PROOFS[0]
    with pytest.raises(ProofError):
        verify_inclusion(number - 1, size, LEAF_HASHES[0], proof, v.EMPTY_ROOT)
    for index, size in v.INCLUSION_INVALID_PROBES:
        for leaf, root in ((v.SOME_HASH, b""), (b"", v.EMPTY_ROOT), (v.SOME_HASH, v.EMPTY_ROOT)):
            with pytest.raises(ProofError):
                verify_inclusion(index, size, leaf, [], root)


def test_single_entry_tree() -> None:
    single = leaf_hash(b"data")
    verify_inclusion(0, 1, single, [], single)
    for leaf, root in ((single, b""), (b"", single), (b"", b"")):
        with pytest.raises(ProofError):
            verify_inclusion(0, 1, leaf, [], root)


def test_wrong_leaf_probe_from_testdata_fails() -> None:
    p = v.WRONG_LEAF_PROBE
    with pytest.raises(ProofError):
        verify_inclusion(p["leaf_index"], p["tree_size"], p["leaf_hash"], p["proof"], p["root"])


@pytest.mark.parametrize("size1,size2,proof", v.CONSISTENCY_PROOFS)
def test_consistency_proof_generation_and_verification(size1: int, size2: int, proof: list[bytes]) -> None:
    assert consistency_proof(LEAF_HASHES, size1, size2) == proof
    verify_consistency(size1, size2, proof, v.ROOTS[size1 - 1], v.ROOTS[size2 - 1])


def _corrupt_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]):  # type: ignore[no-untyped-def]
    """The probes of the reference test (proof/verify_test.go corruptConsistencyProof)."""
    probes = [
        ("size1 - 1", size1 - 1, size2, root1, root2, proof),
        ("size1 + 1", size1 + 1, size2, root1, root2, proof),
        ("size1 ^ 2", size1 ^ 2, size2, root1, root2, proof),
        ("size2 * 2", size1, size2 * 2, root1, root2, proof),
        ("size2 / 2", size1, size2 // 2, root1, root2, proof),
        ("wrong root1", size1, size2, b"WrongRoot", root2, proof),
        ("wrong root2", size1, size2, root1, b"WrongRoot", proof),
        ("swapped roots", size1, size2, root2, root1, proof),
        ("empty proof", size1, size2, root1, root2, []),
        ("trailing garbage", size1, size2, root1, root2, [*proof, b""]),
        ("trailing root1", size1, size2, root1, root2, [*proof, root1]),
        ("trailing root2", size1, size2, root1, root2, [*proof, root2]),
        ("preceding garbage", size1, size2, root1, root2, [b"", *proof]),
        ("preceding root1", size1, size2, root1, root2, [root1, *proof]),
        ("preceding root2", size1, size2, root1, root2, [root2, *proof]),
        ("preceding proof[0]", size1, size2, root1, root2, [proof[0], *proof]),
        ("truncated proof", size1, size2, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = bytes([wrong[i][0] ^ 16]) + wrong[i][1:]
        probes.append((f"modified proof[{i}] bit 4", size1, size2, root1, root2, wrong))
    return probes


@pytest.mark.parametrize("size1,size2,proof", [c for c in v.CONSISTENCY_PROOFS if c[2]])
def test_corrupted_consistency_proofs_fail(size1: int, size2: int, proof: list[bytes]) -> None:
    root1, root2 = v.ROOTS[size1 - 1], v.ROOTS[size2 - 1]
    for desc, s1, s2, r1, r2, path in _corrupt_consistency(size1, size2, root1, root2, proof):
        with pytest.raises(ProofError):
            verify_consistency(s1, s2, path, r1, r2)
            pytest.fail(f"verified a corrupted proof: {desc}")


@pytest.mark.parametrize("size1,size2,root1,root2,proof,want_error", v.CONSISTENCY_EDGE_CASES)
def test_consistency_edge_cases(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], want_error: bool
) -> None:
    if want_error:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, root1, root2)
    else:
        verify_consistency(size1, size2, proof, root1, root2)


def test_swapped_roots_probe_from_testdata_fails() -> None:
    p = v.SWAPPED_ROOTS_PROBE
    with pytest.raises(ProofError, match="does not reproduce the root"):
        verify_consistency(p["size1"], p["size2"], p["proof"], p["root1"], p["root2"])


def test_messages_name_what_is_wrong() -> None:
    proof = v.INCLUSION_PROOFS[2][2]
    with pytest.raises(ProofError, match="leaf 0 in a tree of size 9 needs 4"):
        verify_inclusion(0, 9, LEAF_HASHES[0], proof, v.ROOTS[7])
    with pytest.raises(ProofError, match="outside a tree of size 8"):
        verify_inclusion(8, 8, LEAF_HASHES[0], proof, v.ROOTS[7])
    with pytest.raises(ProofError, match="does not match the root at size 8"):
        verify_inclusion(0, 8, LEAF_HASHES[1], proof, v.ROOTS[7])


def test_proofs_over_a_lazy_leaf_source_read_few_ranges() -> None:
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(1000)]
    reads: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> list[bytes]:  # stands in for one database range query
        reads.append((start, end))
        return hashes[start:end]

    lazy = LeafSource(1000, fetch)
    assert merkle.inclusion_proof(lazy, 537) == merkle.inclusion_proof(hashes, 537)
    assert len(reads) <= 11  # one contiguous read per level, never one per leaf
    reads.clear()
    assert merkle.consistency_proof(lazy, 300) == merkle.consistency_proof(hashes, 300, 1000)
    assert len(reads) <= 12
    assert tree_root(LeafSource(7, fetch)) == tree_root(hashes, 7)  # pinned to a checkpoint size
    assert lazy[5] == hashes[5] and lazy[-1] == hashes[999]
    with pytest.raises(IndexError):
        lazy[1000]
    with pytest.raises(ValueError, match="returned 2 hashes"):
        LeafSource(10, lambda a, b: hashes[:2])[0:5]


def test_generators_reject_out_of_range_arguments() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(LEAF_HASHES, 8)
    with pytest.raises(ValueError):
        inclusion_proof(LEAF_HASHES, 0, 9)
    with pytest.raises(ValueError):
        consistency_proof(LEAF_HASHES, 5, 4)
    with pytest.raises(ValueError):
        tree_root(LEAF_HASHES, 9)
