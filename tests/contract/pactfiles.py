"""The committed pact files (tests/contract/pacts/) and how the tests hold them to what the consumer tests write.

There is no Pact broker here: the pact files live in the repository, and the provider tests verify what is
committed. Each consumer test writes the pact of the interactions it exercised into its own temporary
directory and checks every interaction there against the committed file (``interactions_check``); one test
per pact builds every interaction of the pact and checks the whole file is what Pact writes for them
(``pact_file_check``). Nothing is written into the tree by a normal run, so CI leaves it clean; after a
deliberate change of a consumer's expectations, ``PACT_UPDATE=1 .venv/bin/pytest tests/contract`` writes
the new files, to be reviewed and committed with the change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pact import Pact

PACT_DIR = Path(__file__).resolve().parent / "pacts"
UPDATE = os.environ.get("PACT_UPDATE") == "1"


def pact_written(pact: Pact, directory: Path) -> Path:
    """Write ``pact`` alone into ``directory`` (a fresh one) and return its file."""
    directory.mkdir(parents=True, exist_ok=True)
    pact.write_file(directory, overwrite=True)
    [path] = directory.glob("*.json")
    return path


def _by_description(document: dict[str, Any]) -> dict[str, Any]:
    return {interaction["description"]: interaction for interaction in document["interactions"]}


def interactions_check(pact: Pact, directory: Path) -> None:
    """Every interaction a consumer test exercised is, byte for byte in meaning, the committed one."""
    written = pact_written(pact, directory)
    committed_path = PACT_DIR / written.name
    if UPDATE and not committed_path.exists():
        return  # pact_file_check writes the whole file
    assert committed_path.exists(), f"{committed_path} is missing: run PACT_UPDATE=1 pytest tests/contract"
    committed = _by_description(json.loads(committed_path.read_text()))
    for description, interaction in _by_description(json.loads(written.read_text())).items():
        if UPDATE:
            continue
        assert description in committed, f"{description!r} is not in {committed_path.name}: regenerate the pact"
        assert interaction == committed[description], (
            f"{description!r} differs from {committed_path.name}: regenerate with PACT_UPDATE=1 and review the diff"
        )


def pact_file_check(pact: Pact, directory: Path) -> Path:
    """The committed file is exactly what Pact writes for ``pact`` (or, with PACT_UPDATE=1, becomes it)."""
    written = pact_written(pact, directory)
    committed_path = PACT_DIR / written.name
    if UPDATE:
        PACT_DIR.mkdir(exist_ok=True)
        committed_path.write_bytes(written.read_bytes())
    assert committed_path.exists(), f"{committed_path} is missing: run PACT_UPDATE=1 pytest tests/contract"
    assert written.read_text() == committed_path.read_text(), (
        f"{committed_path.name} is not what the consumer tests write: regenerate with PACT_UPDATE=1, review, commit"
    )
    return committed_path
