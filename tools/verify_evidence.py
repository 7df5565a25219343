#!/usr/bin/env python3
"""Verify a TMS Console evidence bundle offline.

Usage: python tools/verify_evidence.py BUNDLE.json [--trusted-keys PUBKEY.pem|DIR ...]

Needs only Python 3.11+ and the ``cryptography`` package; neither Django nor the project is
imported. The checks are those of ``verify_core.py``, found next to this script (the two-file kit
handed to partners) or at missions/evidence/verify_core.py in a checkout, and loaded by path.

Exit status: 0 verified, 1 a check failed (every failure is named), 2 the bundle or a key file
could not be read.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
CANDIDATES = [HERE / "verify_core.py", HERE.parent / "missions" / "evidence" / "verify_core.py"]


def load_core() -> ModuleType:
    path = next((p for p in CANDIDATES if p.is_file()), None)
    if path is None:
        raise SystemExit(f"error: verify_core.py not found (looked at {', '.join(map(str, CANDIDATES))})")
    spec = importlib.util.spec_from_file_location("tms_evidence_verify_core", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise SystemExit(f"error: {exc.name or exc} is missing; install it with: pip install cryptography") from exc
    return module


def trusted_keys_load(core: ModuleType, paths: Sequence[str]) -> dict[str, bytes]:
    """Public keys from PEM files, directories of ``*.pem`` files, or files of base64 raw keys (one per line)."""
    keys: dict[str, bytes] = {}
    for path in map(Path, paths):
        files = sorted(path.glob("*.pem")) if path.is_dir() else [path]
        for file in files:
            data = file.read_bytes()
            if b"PRIVATE KEY" in data:
                continue  # a key directory may also hold a private key: never needed, never read further
            if b"-----BEGIN" in data:
                raw_keys = [core.public_key_from_pem(data)]
            else:
                raw_keys = [base64.b64decode(line, validate=True) for line in data.split() if line]
            for raw in raw_keys:
                if len(raw) != 32:
                    raise ValueError(f"{file}: not a 32-byte Ed25519 public key")
                keys[core.key_id_for(raw)] = raw
    return keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a TMS Console evidence bundle offline.")
    parser.add_argument("bundle", help="path to the evidence bundle (JSON)")
    parser.add_argument(
        "--trusted-keys",
        action="append",
        default=[],
        metavar="PATH",
        help="published public key (PEM) or a directory of them; repeatable. Without it the bundle's own "
        "keys are used, which proves the bundle is intact but not who made it.",
    )
    args = parser.parse_args(argv)
    core = load_core()
    try:
        data = Path(args.bundle).read_bytes()
        trusted = trusted_keys_load(core, args.trusted_keys) if args.trusted_keys else None
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = core.bundle_verify(data, trusted)
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
