"""DSSE protocol test vectors (data only).

Source: github.com/secure-systems-lab/dsse, file testvectors/vectors.json (Ed25519 keys A and B
are the RFC 8032 test keys). Each case: envelope, trusted key names, threshold, supported payload
types, expected PAE (hex) and the expected outcome.
"""

from __future__ import annotations

from typing import Any

KEYS = {
    "A": {
        "seed": "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "public": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    },
    "B": {
        "seed": "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "public": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
    },
}

_INTOTO = "application/vnd.in-toto+json"
_PAYLOAD = "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ=="
_SIG_A = "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA=="
_SIG_B = "c1+67/aT0yqEpwx8PsVY3MLHsj9D0CZ014/Fv/QlG59P+9CobUZ7xECJ/V3USG0Ob9CiE5LjReEZUzNF2l7eBw=="
_PAE_STATEMENT = (
    "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203433207b225f74797065223a"
    "2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d"
)

VECTORS: list[dict[str, Any]] = [
    {
        "id": "single-signature",
        "envelope": {"payload": _PAYLOAD, "payloadType": _INTOTO, "signatures": [{"sig": _SIG_A, "keyid": "A"}]},
        "trustedKeys": ["A"],
        "threshold": 1,
        "supportedPayloadTypes": [_INTOTO],
        "pae": _PAE_STATEMENT,
        "expect": "accept",
    },
    {
        "id": "url-safe-base64",
        "envelope": {
            "payload": "-_-_Pj8=",
            "payloadType": _INTOTO,
            "signatures": [
                {
                    "sig": "P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW886DbWNWcCmX5twLrAw==",
                    "keyid": "A",
                }
            ],
        },
        "trustedKeys": ["A"],
        "threshold": 1,
        "supportedPayloadTypes": [_INTOTO],
        "pae": "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203520fbffbf3e3f",
        "expect": "accept",
    },
    {
        "id": "payload-type-swapped",
        "envelope": {
            "payload": _PAYLOAD,
            "payloadType": "application/vnd.example.other+json",
            "signatures": [{"sig": _SIG_A, "keyid": "A"}],
        },
        "trustedKeys": ["A"],
        "threshold": 1,
        "supportedPayloadTypes": [_INTOTO, "application/vnd.example.other+json"],
        "pae": _PAE_STATEMENT,  # the PAE the signature was made over, not the envelope's
        "expect": "reject",
    },
    {
        "id": "non-ascii-payload-type",
        "envelope": {
            "payload": _PAYLOAD,
            "payloadType": "application/vnd.ex\u00e4mple+json",
            "signatures": [
                {
                    "sig": "xmSk/ug66ysT7ayhkCIjhAq42zgZXSsEWuzUaNL7w2eGAdF/NU6/fRXPtmfN+5DNSAs5/i2lUnHjbbjPsu0tAw==",
                    "keyid": "A",
                }
            ],
        },
        "trustedKeys": ["A"],
        "threshold": 1,
        "supportedPayloadTypes": ["application/vnd.ex\u00e4mple+json"],
        "pae": (
            "445353457631203239206170706c69636174696f6e2f766e642e6578c3a46d706c652b6a736f6e203433207b225f747970"
            "65223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d"
        ),
        "expect": "accept",
    },
    {
        "id": "empty-payload",
        "envelope": {
            "payload": "",
            "payloadType": _INTOTO,
            "signatures": [
                {
                    "sig": "gSggCAaTLTYyRH6FIDBem6meyIynsYy8RTHVzwx9tnTb7Bg/1jMWnuVgI/gffqmbsC2VX5/jHfkkDqsj7CDbDg==",
                    "keyid": "A",
                }
            ],
        },
        "trustedKeys": ["A"],
        "threshold": 1,
        "supportedPayloadTypes": [_INTOTO],
        "pae": "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203020",
        "expect": "accept",
    },
    {
        "id": "empty-payload-type",
        "envelope": {
            "payload": _PAYLOAD,
            "payloadType": "",
            "signatures": [
                {
                    "sig": "iC3q/+3Rm0+lpAJRueDmDh15PnwCfxKmS0NAfKsbv+zgulXQC/WM9trc+j1XEqlwDIg/vf/uNfebeD6sxInrDg==",
                    "keyid": "A",
                }
            ],
        },
        "trustedKeys": ["A"],
        "threshold": 1,
        "supportedPayloadTypes": [_INTOTO],
        "pae": (
            "445353457631203020203433207b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d65"
            "6e742f7631227d"
        ),
        "expect": "reject",
    },
    {
        "id": "threshold-two-distinct-keys",
        "envelope": {
            "payload": _PAYLOAD,
            "payloadType": _INTOTO,
            "signatures": [{"sig": _SIG_A, "keyid": "A"}, {"sig": _SIG_B, "keyid": "B"}],
        },
        "trustedKeys": ["A", "B"],
        "threshold": 2,
        "supportedPayloadTypes": [_INTOTO],
        "pae": _PAE_STATEMENT,
        "expect": "accept",
    },
    {
        "id": "threshold-two-one-key-twice",
        "envelope": {
            "payload": _PAYLOAD,
            "payloadType": _INTOTO,
            "signatures": [{"sig": _SIG_A, "keyid": "A"}, {"sig": _SIG_A, "keyid": "A"}],
        },
        "trustedKeys": ["A", "B"],
        "threshold": 2,
        "supportedPayloadTypes": [_INTOTO],
        "pae": _PAE_STATEMENT,
        "expect": "reject",
    },
    {
        "id": "threshold-two-without-keyids",
        "envelope": {"payload": _PAYLOAD, "payloadType": _INTOTO, "signatures": [{"sig": _SIG_A}, {"sig": _SIG_B}]},
        "trustedKeys": ["A", "B"],
        "threshold": 2,
        "supportedPayloadTypes": [_INTOTO],
        "pae": _PAE_STATEMENT,
        "expect": "accept",
    },
]
