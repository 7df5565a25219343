"""Signed-note and tree-note test vectors (data only).

Source: github.com/golang/mod, file sumdb/note/note_test.go (TestNewVerifier, TestNewSigner,
TestSign, TestVerifierList, TestOpen), and sumdb/tlog/note_test.go (TestFormatTree,
TestParseTree). BSD-style licence, The Go Authors.
"""

from __future__ import annotations

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_KEY_HASH = 0xC74F20A3
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
ENOCH_KEY_HASH = 0xAF0CFE78

TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG_B64 = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
ENOCH_SIG_B64 = "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
PETER_SIG = "\u2014 PeterNeumann " + PETER_SIG_B64 + "\n"
ENOCH_SIG = "\u2014 EnochRoot " + ENOCH_SIG_B64 + "\n"
SIGNED = TEXT + "\n" + PETER_SIG  # the output of Sign(TEXT) with PETER_SKEY

# Verifier keys that must be rejected (wrong length with adjusted hash; unknown algorithm).
BAD_VKEYS = [
    "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
]

# TestOpen "Invalid encoded message syntax": every one is a malformed note.
BAD_MESSAGES: list[bytes] = [
    TEXT.encode(),
    (TEXT + "\n").encode(),
    (TEXT + "\n" + PETER_SIG[:-1]).encode(),
    ("\x01" + TEXT + "\n" + PETER_SIG).encode(),
    b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
    (TEXT + "\n" + "\u2014 Bad Name " + PETER_SIG_B64).encode(),
    (TEXT + "\n" + PETER_SIG + "Unexpected line.\n").encode(),
]

# sumdb/tlog: a tree note body; the hash is RecordHash("hello world") = RFC 6962 leaf hash.
TREE_NOTE_BODY = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"
TREE_NOTE_SIZE = 123456789012
TREE_NOTE_RECORD = b"hello world"
BAD_TREE_NOTE_BODIES = [
    "go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
    "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n",
]
