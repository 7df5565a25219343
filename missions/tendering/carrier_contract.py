"""The carrier API contract (docs/carrier-api.yaml) as JSON Schema validators.

Shared by the outbound client, which checks every answer against it, and the
carrier simulator, which checks every request: a plain module with no domain imports.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACT_PATH = Path(settings.BASE_DIR) / "docs" / "carrier-api.yaml"
CONTRACT_URI = "urn:tms:carrier-api"


@functools.cache
def contract() -> dict[str, Any]:
    with CONTRACT_PATH.open(encoding="utf-8") as fh:
        doc: dict[str, Any] = yaml.safe_load(fh)
    return doc


@functools.cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(contract(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(CONTRACT_URI, resource)
    return registry


@functools.cache
def _validator(pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{CONTRACT_URI}#{pointer}"}, registry=_registry())


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def contract_response_pointer(*, path: str, method: str, status: int) -> str | None:
    """JSON pointer to the schema of a documented response, or None if the status is not documented."""
    operation = contract()["paths"].get(path, {}).get(method.lower())
    if operation is None:
        return None
    response = operation.get("responses", {}).get(str(status))
    if response is None:
        return None
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[-1]
        response = contract()["components"]["responses"][name]
        base = f"/components/responses/{_escape(name)}"
    else:
        base = f"/paths/{_escape(path)}/{method.lower()}/responses/{status}"
    for media in ("application/json", "application/problem+json"):
        if media in response.get("content", {}):
            return f"{base}/content/{_escape(media)}/schema"
    return None


def contract_validate(*, pointer: str, body: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``body`` matches the schema at ``pointer``."""
    _validator(pointer).validate(body)


def contract_schema_errors(*, schema: str, body: Any) -> list[str]:
    """Messages for every way ``body`` breaks ``#/components/schemas/<schema>`` (empty when valid)."""
    validator = _validator(f"/components/schemas/{schema}")
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(body)]
