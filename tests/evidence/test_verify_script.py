"""The standalone verifier script, run as a partner would: a subprocess without Django settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from missions.evidence.keys import Ed25519Signer
from tests.evidence.builders import Built, build

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "verify_evidence.py"
CORE = ROOT / "missions" / "evidence" / "verify_core.py"


@pytest.fixture(scope="module")
def built() -> Built:
    return build()


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # Minimal environment: no DJANGO_SETTINGS_MODULE, no PYTHONPATH, nothing from the test run.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_good_bundle_exits_0_with_a_summary(built: Built, tmp_path: Path) -> None:
    (tmp_path / "good.json").write_bytes(built.bundle)
    (tmp_path / "log.pub.pem").write_bytes(built.signer.public_pem())
    result = run([str(SCRIPT), "good.json", "--trusted-keys", "log.pub.pem"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: evidence bundle verifies")
    assert "statement 3 is leaf 6 of the log at size 9" in result.stdout


def test_bad_bundles_exit_1_naming_the_failure(built: Built, tmp_path: Path) -> None:
    (tmp_path / "truncated.json").write_bytes(built.bundle[: len(built.bundle) // 2])
    result = run([str(SCRIPT), "truncated.json"], cwd=tmp_path)
    assert result.returncode == 1
    assert "error: bundle is not valid JSON (truncated?)" in result.stderr

    (tmp_path / "good.json").write_bytes(built.bundle)
    (tmp_path / "stranger.pem").write_bytes(Ed25519Signer.generate().public_pem())
    result = run([str(SCRIPT), "good.json", "--trusted-keys", "stranger.pem"], cwd=tmp_path)
    assert result.returncode == 1
    assert "error: checkpoint signed by unknown key (tms-console.example/evidence+" in result.stderr


def test_unreadable_input_exits_2(tmp_path: Path) -> None:
    result = run([str(SCRIPT), "missing.json"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error:")


def test_script_imports_neither_django_nor_the_project(built: Built, tmp_path: Path) -> None:
    (tmp_path / "good.json").write_bytes(built.bundle)
    probe = (
        "import runpy, sys\n"
        f"sys.argv = [{str(SCRIPT)!r}, 'good.json']\n"
        "try:\n"
        f"    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'missions', 'tms_console'})\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n"
    )
    result = run(["-c", probe], cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_two_file_kit_works_outside_the_checkout(built: Built, tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    kit.mkdir()
    shutil.copy(SCRIPT, kit / "verify_evidence.py")
    shutil.copy(CORE, kit / "verify_core.py")
    (tmp_path / "good.json").write_bytes(built.bundle)
    result = run([str(kit / "verify_evidence.py"), str(tmp_path / "good.json")], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no trusted keys given" in result.stdout
