"""Contract tests: Pact consumer pacts and their provider verification, schemathesis' stateful run.

The Pact core (the Rust FFI shipped in the ``pact-python-ffi`` wheel) would otherwise report usage to its
makers over the network: this machine and CI have no network beyond the package registries, and a test
suite has no business phoning home. Set before any Pact object exists.
"""

from __future__ import annotations

import os

os.environ["PACT_DO_NOT_TRACK"] = "true"
