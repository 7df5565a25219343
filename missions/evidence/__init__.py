"""Verifiable evidence: signed statements, a Merkle transparency log and offline-verifiable bundles.

Modules: ``merkle`` (RFC 9162 trees and proofs), ``note`` and ``checkpoint`` (C2SP signed notes
and tlog checkpoints), ``dsse`` (DSSE envelopes, in-toto statements), ``keys`` (signers and the
key ring), ``bundle`` (bundle format, in-memory log) and ``verify_core`` (every verification
check, dependency-free so a partner can run it alone). No Django models here; nothing in this
package imports Django at module level.
"""
