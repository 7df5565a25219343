"""deploy/terraform: parsed and scanned (check.sh), every variable typed and described, every output described.

python-hcl2 and checkov live in .venv-deploy (``make install-deploy``), apart from the app's
environment, so both run as subprocesses; without that venv the tests skip (fail under
TMS_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import require_service

ROOT = Path(settings.BASE_DIR)
MODULE = ROOT / "deploy" / "terraform"
DEPLOY_PYTHON = ROOT / ".venv-deploy" / "bin" / "python"

PARSE = """
import json, sys
from pathlib import Path
import hcl2
out = {}
for path in sorted(Path(sys.argv[1]).glob("*.tf")):
    with path.open() as handle:
        out[path.name] = hcl2.load(handle)
print(json.dumps(out))
"""


def deploy_venv() -> Path:
    require_service(".venv-deploy (make install-deploy)", DEPLOY_PYTHON.exists())
    return DEPLOY_PYTHON


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    result = subprocess.run(
        [str(deploy_venv()), "-c", PARSE, str(MODULE)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout)


def blocks(parsed: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for document in parsed.values():
        for block in document.get(kind, []):
            found.update(block)
    return found


def test_check_script_parses_and_scans() -> None:
    deploy_venv()
    result = subprocess.run([str(MODULE / "check.sh")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parsed main.tf" in result.stdout and "Failed checks: 0" in result.stdout


def test_every_variable_has_a_type_and_a_description(parsed: dict[str, Any]) -> None:
    variables = blocks(parsed, "variable")
    assert {"name", "vpc_id", "private_subnet_ids", "carrier_ca_bundle_pem", "partner_domain"} <= set(variables)
    for name, body in variables.items():
        assert body.get("type"), f"variable {name} has no type"
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"


def test_every_output_has_a_description(parsed: dict[str, Any]) -> None:
    outputs = blocks(parsed, "output")
    assert {"postgres_endpoint", "redis_primary_endpoint", "partner_lb_dns_name"} <= set(outputs)
    for name, body in outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name} has no description"


def test_the_readme_lists_every_variable_and_output(parsed: dict[str, Any]) -> None:
    readme = (MODULE / "README.md").read_text()
    for name in [*blocks(parsed, "variable"), *blocks(parsed, "output")]:
        assert f"`{name}`" in readme, f"{name} is missing from deploy/terraform/README.md"
    assert "not been applied" in readme


def test_checkov_skips_give_a_reason() -> None:
    for path in MODULE.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                check, _, reason = line.split("checkov:skip=", 1)[1].partition(":")
                assert check.startswith("CKV") and len(reason.strip()) > 20, f"{path.name}: {line.strip()}"
