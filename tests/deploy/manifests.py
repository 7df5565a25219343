"""Rendering the Kustomize trees and reading what the settings and the app export, for the deploy tests."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

BASE_DIR = Path(__file__).resolve().parents[2]
K8S = BASE_DIR / "deploy" / "k8s"
OVERLAYS = ("staging", "production")
ENV_METHODS = {"str", "bool", "int", "float", "list", "json", "url", "db_url", "cache_url", "dict", "tuple"}


def kubectl() -> str | None:
    return shutil.which("kubectl")


@cache
def render(tree: str) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of a tree under deploy/k8s, as a list of objects."""
    binary = kubectl()
    assert binary is not None
    result = subprocess.run(
        [binary, "kustomize", str(K8S / tree)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def settings_variables() -> set[str]:
    """Every environment variable tms_console/settings.py reads through django-environ (``env.X("NAME")``)."""
    tree = ast.parse((BASE_DIR / "tms_console" / "settings.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in ENV_METHODS or not node.args:
            continue
        owner = node.func.value
        reads_env = (isinstance(owner, ast.Name) and owner.id == "env") or (
            isinstance(owner, ast.Call) and isinstance(owner.func, ast.Attribute) and owner.func.attr == "Env"
        )
        first = node.args[0]
        if reads_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, pod spec) of every workload: Deployments, Rollouts, Jobs, CronJobs."""
    found = []
    for obj in objects:
        kind = obj["kind"]
        if kind in ("Deployment", "Rollout", "Job"):
            found.append((obj, obj["spec"]["template"]["spec"]))
        elif kind == "CronJob":
            found.append((obj, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    return found


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


@cache
def exported_metric_names() -> set[str]:
    """Metric names the application registers (``"tms_..."`` string literals in its packages)."""
    names: set[str] = set()
    for package in ("tms_console", "missions", "sla", "runbooks"):
        for path in (BASE_DIR / package).rglob("*.py"):
            names.update(re.findall(r"""["'](tms_[a-z0-9_]+)["']""", path.read_text()))
    return names
