"""The import contracts in pyproject.toml hold, and they catch an upward import or a cycle."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tms_console", "missions", "runbooks", "sla")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    only = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *only],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def copy_of_the_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contracts_hold_on_the_code() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # The domain core reaching up into an app built on it.
        ("missions/services.py", "from sla import tasks as _upward", "layers"),
        # The kernel importing the domain.
        ("tms_console/pages.py", "from missions import selectors as _upward", "layers"),
        # A capability reaching into a sibling room.
        (
            "missions/telemetry/gaps.py",
            "from missions.tendering import dispatch as _sideways",
            "capabilities-independent",
        ),
        # A simulator using the product's internals.
        ("missions/simulators/fleet.py", "from missions import services as _internal", "simulators-outside"),
        # Two modules of one package importing each other.
        ("runbooks/records.py", "from runbooks import engine as _cycle", "no-cycles"),
        ("missions/telemetry/storage.py", "from missions.telemetry import ingest as _cycle", "no-cycles"),
    ],
)
def test_an_introduced_violation_fails(copy_of_the_code: Path, module: str, line: str, contract: str) -> None:
    assert lint_imports(copy_of_the_code, contract).returncode == 0  # the untouched copy keeps it
    target = copy_of_the_code / module
    original = target.read_text()
    target.write_text(original + "\n" + line + "  # noqa: E402,F401\n")
    try:
        result = lint_imports(copy_of_the_code, contract)
    finally:
        target.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "BROKEN" in result.stdout
    assert Path(module).stem in result.stdout  # the report names the offending module
