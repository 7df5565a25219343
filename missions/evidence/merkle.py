"""RFC 6962 / RFC 9162 Merkle tree hashing: roots, inclusion and consistency proofs.

Everything works on *leaf hashes* (``leaf_hash(data)``), not on leaf data, because the log
only ever stores hashes. The functions take any ``Sequence[bytes]``: a list in memory, or a
lazy object backed by the database whose ``__getitem__`` accepts slices and ``__len__`` gives
the tree size. A proof touches O(log n) contiguous slices and hashes O(n) leaves in total.

Inclusion verification lives in ``verify_core`` (dependency-free, shared with the standalone
verifier) and is re-exported here; consistency verification is here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import overload

from missions.evidence.verify_core import (
    EMPTY_ROOT,
    HASH_SIZE,
    ProofError,
    check_hash_length,
    inclusion_proof_size,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LeafSource",
    "MerkleFrontier",
    "ProofError",
    "consistency_proof",
    "consistency_proof_size",
    "inclusion_proof",
    "inclusion_proof_size",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]


class LeafSource(Sequence[bytes]):
    """Leaf hashes [0, size) read on demand through ``fetch(start, end)``, e.g. one database range query.

    ``fetch`` must return the hashes of leaves start..end-1 in order, for example
    ``lambda a, b: [bytes(h) for h in LogLeaf.objects.filter(index__gte=a, index__lt=b)
    .order_by("index").values_list("leaf_hash", flat=True)]``. Fixing ``size`` pins the tree to a
    checkpoint even while new leaves are appended.
    """

    def __init__(self, size: int, fetch: Callable[[int, int], Sequence[bytes]]) -> None:
        self._size = size
        self._fetch = fetch

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, item: int) -> bytes: ...

    @overload
    def __getitem__(self, item: slice) -> Sequence[bytes]: ...

    def __getitem__(self, item: int | slice) -> bytes | Sequence[bytes]:
        if isinstance(item, slice):
            start, stop, step = item.indices(self._size)
            if step != 1:
                raise ValueError("leaf ranges are contiguous")
            hashes = self._fetch(start, stop) if stop > start else []
            if len(hashes) != max(0, stop - start):
                raise ValueError(f"leaf source returned {len(hashes)} hashes for leaves {start}..{stop - 1}")
            return hashes
        if not -self._size <= item < self._size:
            raise IndexError(item)
        index = item % self._size
        return self._fetch(index, index + 1)[0]


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1): where MTH splits (RFC 9162 §2.1.1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root_of(hashes: Iterable[bytes]) -> bytes:
    """MTH over leaf hashes in one pass, keeping the perfect subtrees seen so far on a stack."""
    frontier = MerkleFrontier()
    for h in hashes:
        frontier.append(h)
    return frontier.root()


def _subtree(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    return _root_of(leaves[start:end])


def tree_root(leaves: Sequence[bytes], size: int | None = None) -> bytes:
    """MTH(D[size]) over the first ``size`` leaf hashes (all of them by default)."""
    size = len(leaves) if size is None else size
    if not 0 <= size <= len(leaves):
        raise ValueError(f"tree size {size} is outside 0..{len(leaves)}")
    return _subtree(leaves, 0, size) if size else EMPTY_ROOT


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 §2.1.3.1, ordered from the leaf up."""
    size = len(leaves) if size is None else size
    if not 0 <= size <= len(leaves):
        raise ValueError(f"tree size {size} is outside 0..{len(leaves)}")
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    # Walk down from the root; each sibling subtree goes on the path, nearest-to-root last.
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            path.append(_subtree(leaves, start + k, end))
            end = start + k
        else:
            path.append(_subtree(leaves, start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], size1: int, size2: int | None = None) -> list[bytes]:
    """PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1; empty when size1 is 0 or equals size2."""
    size2 = len(leaves) if size2 is None else size2
    if not 0 <= size2 <= len(leaves):
        raise ValueError(f"tree size {size2} is outside 0..{len(leaves)}")
    if not 0 <= size1 <= size2:
        raise ValueError(f"earlier size {size1} is outside 0..{size2}")
    if size1 in (0, size2):
        return []
    proof: list[bytes] = []
    start, end, m, whole = 0, size2, size1, True
    # SUBPROOF(m, D[start:end], whole), unrolled: the recursion is a single path down the tree.
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(_subtree(leaves, start + k, end))
            end = start + k
        else:
            proof.append(_subtree(leaves, start, start + k))
            start, m, whole = start + k, m - k, False
    if not whole:
        proof.append(_subtree(leaves, start, end))
    proof.reverse()
    return proof


@dataclass
class MerkleFrontier:
    """The roots of the perfect subtrees covering the leaves appended so far (a "compact range").

    Appending is O(log n) and needs no earlier leaf, so a log can keep its current root without
    re-reading its table: persist ``to_list()`` with the tree size and rebuild with
    ``from_list``. The stack holds (height, hash) pairs, largest subtree first.
    """

    size: int = 0
    _stack: list[tuple[int, bytes]] = field(default_factory=list)

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise ValueError("leaf hashes are 32 bytes")
        height, value = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            height, value = height + 1, node_hash(left, value)
        self._stack.append((height, value))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        value = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            value = node_hash(left, value)
        return value

    def to_list(self) -> list[bytes]:
        return [h for _, h in self._stack]

    @classmethod
    def from_list(cls, size: int, hashes: Sequence[bytes]) -> MerkleFrontier:
        """Rebuild from ``to_list()``: the subtree heights are the set bits of ``size``, high to low."""
        heights = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        if len(heights) != len(hashes):
            raise ValueError(f"a tree of size {size} has {len(heights)} frontier hashes, got {len(hashes)}")
        return cls(size, list(zip(heights, hashes, strict=True)))


def consistency_proof_size(size1: int, size2: int) -> int:
    """Number of hashes in the consistency proof from ``size1`` to ``size2`` (0 < size1 < size2)."""
    level = (size1 & -size1).bit_length() - 1  # trailing zero bits of size1
    index = (size1 - 1) >> level
    length = inclusion_proof_size(index, ((size2 - 1) >> level) + 1)
    # When size1 is a power of two its root is a node of the new tree and is not sent (§2.1.4.1).
    return length if size1 == 1 << level else length + 1


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Raise ProofError unless ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2).

    RFC 9162 §2.1.4.2, with the trivial cases handled as the reference implementation
    (transparency-dev/merkle) does: equal sizes need equal roots and an empty proof, and the
    empty tree is consistent with every tree.
    """
    if size1 < 0 or size2 < 0:
        raise ProofError("negative tree size")
    if size2 < size1:
        raise ProofError(f"tree size {size2} is smaller than the earlier size {size1}")
    if size1 == size2:
        if root1 != root2:
            raise ProofError(f"roots differ for the same tree size {size1}")
        if proof:
            raise ProofError("proof must be empty for equal tree sizes")
        return
    if size1 == 0:
        if proof:
            raise ProofError("proof must be empty from the empty tree")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    check_hash_length(root1, "first root")
    check_hash_length(root2, "second root")
    expected = consistency_proof_size(size1, size2)
    if len(proof) != expected:
        raise ProofError(f"proof has {len(proof)} hashes, sizes {size1} -> {size2} need {expected}")
    for position, element in enumerate(proof):
        check_hash_length(element, f"proof hash {position}")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    if fr != root1:
        raise ProofError(f"consistency proof does not reproduce the root at size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not reproduce the root at size {size2}")
