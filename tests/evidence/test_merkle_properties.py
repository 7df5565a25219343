"""Property tests: every generated proof verifies, every tampered one fails, for random trees."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from missions.evidence.merkle import (
    MerkleFrontier,
    ProofError,
    consistency_proof,
    consistency_proof_size,
    inclusion_proof,
    inclusion_proof_size,
    leaf_hash,
    node_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from the RFC 9162 §2.1.1 definition (recursive split at the largest power of 2 < n)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def leaves_of(size: int, salt: int) -> list[bytes]:
    return [leaf_hash(salt.to_bytes(4, "big") + i.to_bytes(4, "big")) for i in range(size)]


def flip(value: bytes, position: int) -> bytes:
    position %= len(value)
    return value[:position] + bytes([value[position] ^ 1]) + value[position + 1 :]


trees = st.tuples(st.integers(min_value=1, max_value=300), st.integers(min_value=0, max_value=2**16))


@settings(max_examples=60, deadline=None)
@given(trees)
def test_root_matches_reference_definition_and_frontier(tree: tuple[int, int]) -> None:
    size, salt = tree
    leaves = leaves_of(size, salt)
    frontier = MerkleFrontier()
    for leaf in leaves:
        frontier.append(leaf)
    assert tree_root(leaves) == reference_root(leaves) == frontier.root()


@settings(max_examples=40, deadline=None)
@given(trees)
def test_every_inclusion_proof_verifies(tree: tuple[int, int]) -> None:
    size, salt = tree
    leaves = leaves_of(size, salt)
    root = tree_root(leaves)
    for index in range(size):
        proof = inclusion_proof(leaves, index)
        assert len(proof) == inclusion_proof_size(index, size)
        verify_inclusion(index, size, leaves[index], proof, root)


@settings(max_examples=40, deadline=None)
@given(trees)
def test_every_consistency_proof_verifies(tree: tuple[int, int]) -> None:
    size, salt = tree
    leaves = leaves_of(size, salt)
    root = tree_root(leaves)
    for size1 in range(size + 1):
        proof = consistency_proof(leaves, size1, size)
        if 0 < size1 < size:
            assert len(proof) == consistency_proof_size(size1, size)
        verify_consistency(size1, size, proof, tree_root(leaves, size1), root)


@settings(max_examples=150, deadline=None)
@given(trees, st.data())
def test_tampered_inclusion_proofs_fail(tree: tuple[int, int], data: st.DataObject) -> None:
    size, salt = tree
    leaves = leaves_of(size, salt)
    root = tree_root(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    proof = inclusion_proof(leaves, index)
    tamper = data.draw(st.sampled_from(["hash", "leaf", "root", "index", "size", "drop", "add"]))
    position = data.draw(st.integers(min_value=0, max_value=10_000))
    leaf, n, i = leaves[index], size, index
    if tamper == "hash" and proof:
        k = position % len(proof)
        proof[k] = flip(proof[k], position // 7)
    elif tamper == "leaf":
        leaf = flip(leaf, position)
    elif tamper == "root":
        root = flip(root, position)
    elif tamper == "index" and size > 1:
        i = (index + 1 + position % (size - 1)) % size
    elif tamper == "size":
        # Only a size whose path has another length must fail: the root, not the proof, binds the
        # size (a checkpoint signs both), e.g. a proof in a tree of 3 also fits a tree of 4.
        n = size + 1 + position % 50
        if inclusion_proof_size(index, n) == len(proof):
            return
    elif tamper == "drop" and proof:
        proof.pop(position % len(proof))
    else:
        proof.insert(position % (len(proof) + 1), leaf_hash(b"extra"))
    if (i, n) != (index, size) and leaves[i] == leaf and n == size:
        return  # a different index still holding the same leaf would be a genuine proof
    try:
        verify_inclusion(i, n, leaf, proof, root)
    except ProofError:
        return
    raise AssertionError(f"tampered proof ({tamper}) verified")


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=2, max_value=300), st.integers(min_value=0, max_value=2**16), st.data())
def test_tampered_consistency_proofs_fail(size: int, salt: int, data: st.DataObject) -> None:
    leaves = leaves_of(size, salt)
    size1 = data.draw(st.integers(min_value=1, max_value=size - 1))
    proof = consistency_proof(leaves, size1, size)
    root1, root2 = tree_root(leaves, size1), tree_root(leaves, size)
    tamper = data.draw(st.sampled_from(["hash", "root1", "root2", "size1", "drop", "add"]))
    position = data.draw(st.integers(min_value=0, max_value=10_000))
    s1 = size1
    if tamper == "hash":
        k = position % len(proof)
        proof[k] = flip(proof[k], position // 7)
    elif tamper == "root1":
        root1 = flip(root1, position)
    elif tamper == "root2":
        root2 = flip(root2, position)
    elif tamper == "size1":
        s1 = 1 + (size1 + position % (size - 1)) % (size - 1)
        if s1 == size1:
            return
    elif tamper == "drop":
        proof.pop(position % len(proof))
    else:
        proof.insert(position % (len(proof) + 1), leaf_hash(b"extra"))
    try:
        verify_consistency(s1, size, proof, root1, root2)
    except ProofError:
        return
    raise AssertionError(f"tampered consistency proof ({tamper}) verified")
