"""drf-spectacular hooks: the published schema covers the partner API only, and says everything it enforces.

- ``only_partner_api`` (preprocessing) keeps the ``/api/v1/`` operations.
- ``StrictSerializerScheme`` marks the telemetry objects ``additionalProperties: false``:
  their serializers, like the ingest pipeline, refuse unknown fields.
- ``answers_every_operation_can_give`` (postprocessing) adds the problem answers that do
  not depend on the operation (a malformed request, an unacceptable ``Accept``, a body
  or request line over the limit, the rate limit; 401 where a token is taken, 403 where a scope is
  needed), the headers those answers carry, the bounds of the ids in paths and the
  pattern of the Idempotency-Key, and marks request bodies required.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension

from missions.models.partner import PARTNER_SCOPES
from missions.partner.api.fields import ID_MAX
from missions.partner.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from missions.partner.api.idempotency import KEY_PATTERN, REPLAYED_HEADER

PROBLEM_REF = "#/components/schemas/Problem"
PROBLEM_MEDIA_TYPE = "application/problem+json"

# What each problem status means on this API (types in docs/api-versioning.md).
PROBLEM_DESCRIPTIONS = {
    "400": "The request is malformed: a field, parameter or header is missing, of the wrong type, out of its "
    "bounds or holds an unstorable string (`validation-error`), the body is not JSON or has a bad length "
    "(`malformed-request`), or the Idempotency-Key is missing or invalid.",
    "401": "No valid credentials: a missing, unknown or expired bearer token (RFC 6750 §3.1 challenge in "
    "`WWW-Authenticate`).",
    "403": "The token lacks the scope this operation needs (`insufficient-scope`).",
    "404": "No such object for this client; another carrier's objects are not found either.",
    "406": "The `Accept` header names no media type this operation can produce.",
    "409": "The object's current state refuses the request, or a request with the same Idempotency-Key is "
    "still running (then `Retry-After`).",
    "413": "The body is over `limits.max_body_bytes`, or a batch over `limits.max_batch_events`.",
    "414": "The request line (method, path and query) is longer than the server takes: 8190 bytes under "
    "gunicorn and nginx as deployed (`uri-too-long`).",
    "415": "The body is not `application/json`.",
    "422": "Well-formed, but refused by a business rule (`domain-rule`, `telemetry-rejected`), or the "
    "Idempotency-Key was already used for another request.",
    "429": "Rate limited: retry after `Retry-After` seconds.",
    "503": "This server instance has no turn for another telemetry batch now (`ingest-busy`): nothing of the "
    "batch was stored; retry it unchanged, with the same Idempotency-Key, after `Retry-After` seconds.",
}
# A webhook delivery takes no token: its 401 is about the signature.
WEBHOOK_401 = (
    "The delivery does not verify: a missing or malformed header, a timestamp outside the tolerance or "
    "no matching signature (`webhook-signature-invalid`)."
)
# Answers any operation can give, whatever it does (401 when it takes a token, 403 when it needs a scope).
EVERY_OPERATION = ("400", "406", "413", "414", "429")

RETRY_AFTER = {
    "description": "Seconds to wait before retrying (RFC 9110 §10.2.3).",
    "schema": {"type": "integer", "minimum": 0},
}
WWW_AUTHENTICATE = {
    "description": "The bearer challenge, with `error` and `error_description` (RFC 6750 §3).",
    "schema": {"type": "string"},
}
INSUFFICIENT_SCOPE = {
    "description": 'On a missing scope: `Bearer error="insufficient_scope", scope=...` (RFC 6750 §3.1).',
    "schema": {"type": "string"},
}
IDEMPOTENT_REPLAYED = {
    "description": "Present on a replay: this is the stored answer to the first request with this key.",
    "schema": {"type": "string", "enum": ["true"]},
}


def only_partner_api(endpoints: list[tuple[str, str, str, Any]], **_: Any) -> list[tuple[str, str, str, Any]]:
    """Drop everything outside /api/v1/ and the schema/docs endpoints themselves."""
    return [
        endpoint
        for endpoint in endpoints
        if endpoint[0].startswith("/api/v1/") and not endpoint[0].startswith(("/api/v1/schema", "/api/v1/docs"))
    ]


def _problem(code: str) -> dict[str, Any]:
    return {
        "description": PROBLEM_DESCRIPTIONS[code],
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
    }


def _is_problem(response: dict[str, Any]) -> bool:
    return PROBLEM_MEDIA_TYPE in response.get("content", {})


def _token_protected(operation: dict[str, Any]) -> bool:
    return any("oauth2" in requirement for requirement in operation.get("security", []))


def _scope_required(operation: dict[str, Any]) -> bool:
    return any(requirement.get("oauth2") for requirement in operation.get("security", []))


def _complete(operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    for code in EVERY_OPERATION:
        responses.setdefault(code, _problem(code))
    if _token_protected(operation):
        responses.setdefault("401", _problem("401"))
    if _scope_required(operation):
        responses.setdefault("403", _problem("403"))
    for code, response in responses.items():
        if _is_problem(response) and not response.get("description"):
            token_free_401 = code == "401" and not _token_protected(operation)
            response["description"] = WEBHOOK_401 if token_free_401 else PROBLEM_DESCRIPTIONS[code]
    responses["429"]["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
    if "409" in responses:
        responses["409"]["headers"] = {"Retry-After": RETRY_AFTER}
    if "503" in responses:
        responses["503"]["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
    if "401" in responses and _token_protected(operation):
        responses["401"]["headers"] = {"WWW-Authenticate": {**WWW_AUTHENTICATE, "required": True}}
    if "403" in responses and _scope_required(operation):
        responses["403"]["headers"] = {"WWW-Authenticate": INSUFFICIENT_SCOPE}
    if "requestBody" in operation:
        # Every write reads its body; an empty one is refused (400), so the body is never optional.
        operation["requestBody"]["required"] = True
    parameters = operation.get("parameters", [])
    if any(p["in"] == "header" and p["name"] == IDEMPOTENCY_HEADER for p in parameters):
        for code, response in responses.items():
            if code not in ("429", "503"):  # answered before the key is claimed: never a replay
                response.setdefault("headers", {})[REPLAYED_HEADER] = IDEMPOTENT_REPLAYED
    for parameter in parameters:
        if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
            parameter["schema"].update({"format": "int64", "minimum": 1, "maximum": ID_MAX})
        if parameter["in"] == "header" and parameter["name"] == IDEMPOTENCY_HEADER:
            parameter["schema"]["pattern"] = KEY_PATTERN


def answers_every_operation_can_give(result: dict[str, Any], **_: Any) -> dict[str, Any]:
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            _complete(operation)
            operation["responses"] = dict(sorted(operation["responses"].items()))
    return result


class StrictSerializerScheme(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """Serializers that refuse unknown fields say so: ``additionalProperties: false``."""

    target_class = "missions.partner.api.telemetry_schema.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema: dict[str, Any] = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        return schema


class PartnerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Describe bearer tokens from /oauth2/token, with the scope each operation needs."""

    target_class = "missions.partner.api.authentication.PartnerTokenAuthentication"
    name = "oauth2"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "oauth2",
            "flows": {"clientCredentials": {"tokenUrl": "/oauth2/token", "scopes": dict(PARTNER_SCOPES)}},
        }

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        scopes: dict[str, str] = getattr(auto_schema.view, "required_scopes", {}) or {}
        needed = scopes.get(auto_schema.method)
        return {self.name: [needed] if needed else []}
