"""schemathesis hooks for fuzzing the partner API (loaded by schemathesis.toml, run by tests/partner/test_schema.py).

- A generated ``Idempotency-Key`` that the schema admits is replaced by a fresh UUID, as a
  real client sends one key per logical request: schemathesis draws short keys such as
  ``"0"`` again and again, and the same key with another body is (rightly) a 422. The
  validity of the case does not change; a key the schema forbids is sent as generated.
- A webhook delivery whose generated slug and headers are valid goes to the seeded carrier
  (``TMS_FUZZ_CARRIER_SLUG``) with a fresh ``webhook-id``, the current time and a real
  Standard Webhooks signature (the carrier's secret from ``TMS_FUZZ_WEBHOOK_SECRET``), so
  the fuzzer reaches the delivery's body and not only the signature check; a fresh id,
  because a redelivered id is acknowledged without a look at the body. Deliveries with a
  missing or malformed slug or header go out as generated.
- ``application/x-ndjson`` (the telemetry backfill): each item of a generated list goes out as
  one JSON line. A value that is not a list has no NDJSON form; it goes out as a body without
  lines, the one shape the server refuses as a whole (400).
- ``application/edi-x12`` (the EDI inbound endpoint): a generated string goes out as its UTF-8
  bytes; anything else as its JSON text (the server reads it as an interchange and refuses it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from typing import Any

import requests
import schemathesis

IDEMPOTENCY_HEADER = "Idempotency-Key"
WEBHOOK_PATH = "/api/v1/webhooks/{carrier_slug}"


@schemathesis.serializer("application/x-ndjson")
def ndjson_serializer(context: Any, value: Any) -> bytes:
    if not isinstance(value, list):
        return b""
    return b"".join(json.dumps(item).encode("utf-8") + b"\n" for item in value)


@schemathesis.serializer("application/edi-x12")
def x12_serializer(context: Any, value: Any) -> bytes:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", errors="replace")


def _schema_pattern(case: Any, location: str, name: str) -> re.Pattern[str] | None:
    for parameter in case.operation.definition.raw.get("parameters", []):
        if parameter.get("in") == location and parameter.get("name") == name:
            pattern = parameter.get("schema", {}).get("pattern")
            return re.compile(pattern) if pattern else None
    return None


def _header(case: Any, name: str) -> str | None:
    for key, value in (case.headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _set_header(case: Any, name: str, value: str) -> None:
    for key in list(case.headers or {}):
        if key.lower() == name.lower():
            case.headers[key] = value


class WebhookSigner(requests.auth.AuthBase):
    """Sign the exact bytes that go on the wire: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""

    def __init__(self, secret: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + body
        digest = hmac.new(self.key, signed, hashlib.sha256).digest()
        request.headers["webhook-signature"] = "v1," + base64.b64encode(digest).decode("ascii")
        return request


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    key = _header(case, IDEMPOTENCY_HEADER)
    pattern = _schema_pattern(case, "header", IDEMPOTENCY_HEADER)
    if key is not None and pattern is not None and pattern.search(key):
        _set_header(case, IDEMPOTENCY_HEADER, str(uuid.uuid4()))

    secret = os.environ.get("TMS_FUZZ_WEBHOOK_SECRET")
    slug = os.environ.get("TMS_FUZZ_CARRIER_SLUG")
    if case.operation.path != WEBHOOK_PATH or not secret or not slug:
        return
    slug_pattern = re.compile(r"[-a-zA-Z0-9_]{1,60}")
    generated_slug = str((case.path_parameters or {}).get("carrier_slug", ""))
    if not slug_pattern.fullmatch(generated_slug):
        return  # a malformed slug goes out as generated (404)
    case.path_parameters["carrier_slug"] = slug
    webhook_id = _header(case, "webhook-id")
    timestamp = _header(case, "webhook-timestamp")
    signature = _header(case, "webhook-signature")
    if not webhook_id or len(webhook_id) > 255 or not signature or not re.fullmatch(r"[0-9]+", timestamp or ""):
        return  # a header the schema forbids goes out as generated (401)
    _set_header(case, "webhook-id", f"msg_{uuid.uuid4().hex}")
    _set_header(case, "webhook-timestamp", str(int(time.time())))
    kwargs["auth"] = WebhookSigner(secret)
