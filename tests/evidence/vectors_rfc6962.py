"""RFC 6962 Merkle test vectors (data only).

Source: github.com/transparency-dev/merkle, file proof/verify_test.go (variables ``leaves``,
``roots``, ``inclusionProofs``, ``consistencyProofs``, ``sha256SomeHash``, ``sha256EmptyTreeHash``
and the tables of TestVerifyInclusion, TestVerifyInclusionSingleEntry and TestVerifyConsistency),
and rfc6962/rfc6962_test.go (TestRFC6962Hasher). Apache License 2.0, Google LLC.
In the inclusion vectors the leaf number is 1-based, as in the source.
Failing probes: testdata/inclusion/1/wrong-leaf.json and testdata/consistency/2/swapped-roots.json
of the same repository, copied as literal cases.
"""

from __future__ import annotations


def h(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


# rfc6962/rfc6962_test.go: TestRFC6962Hasher
EMPTY_ROOT = h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
EMPTY_LEAF_HASH = h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
LEAF_L123456_HASH = h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")  # HashLeaf("L123456")
NODE_N123_N456_HASH = h(
    "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
)  # HashChildren("N123", "N456")

SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")

LEAVES = [
    h(""),
    h("00"),
    h("10"),
    h("2021"),
    h("3031"),
    h("40414243"),
    h("5051525354555657"),
    h("606162636465666768696a6b6c6d6e6f"),
]

# ROOTS[n - 1] is the root of the tree of the first n leaves.
ROOTS = [
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]

# (leaf number, 1-based; tree size; audit path)
INCLUSION_PROOFS: list[tuple[int, int, list[bytes]]] = [
    (0, 0, []),  # invalid: leaf number 0 does not exist (the source skips it as "an invalid path")
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (size1, size2, proof)
CONSISTENCY_PROOFS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]

# TestVerifyConsistency table: (size1, size2, root1, root2, proof, want_error)
_ROOT1 = b"don't care 1"
_ROOT2 = b"don't care 2"
CONSISTENCY_EDGE_CASES: list[tuple[int, int, bytes, bytes, list[bytes], bool]] = [
    (0, 0, _ROOT1, _ROOT2, [], True),
    (1, 1, _ROOT1, _ROOT2, [], True),
    # Sizes that are always consistent.
    (0, 0, _ROOT1, _ROOT1, [], False),
    (0, 1, _ROOT1, _ROOT2, [], False),
    (1, 1, _ROOT2, _ROOT2, [], False),
    # Time travel to the past.
    (1, 0, _ROOT1, _ROOT2, [], True),
    (2, 1, _ROOT1, _ROOT2, [], True),
    # Empty proof.
    (1, 2, _ROOT1, _ROOT2, [], True),
    # Roots don't match.
    (0, 0, EMPTY_ROOT, _ROOT2, [], True),
    (1, 1, EMPTY_ROOT, _ROOT2, [], True),
    # Roots match but the proof is not empty.
    (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], True),
    (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], True),
    (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], True),
]

# TestVerifyInclusion probes with an empty proof, all of which must fail: (index, size)
INCLUSION_INVALID_PROBES = [(0, 0), (0, 1), (1, 0), (2, 1)]

# testdata/inclusion/1/wrong-leaf.json (base64 fields decoded): must fail.
WRONG_LEAF_PROBE = {
    "leaf_index": 0,
    "tree_size": 8,
    "root": ROOTS[7],
    "leaf_hash": b"WrongLeaf",
    "proof": INCLUSION_PROOFS[2][2],
}

# testdata/consistency/2/swapped-roots.json (base64 fields decoded): must fail.
SWAPPED_ROOTS_PROBE = {
    "size1": 6,
    "size2": 8,
    "root1": ROOTS[7],
    "root2": ROOTS[5],
    "proof": CONSISTENCY_PROOFS[2][2],
}
