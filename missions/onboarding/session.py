"""A certification run's session with a carrier's sandbox: its calls, what they learn, and how checks end.

Every call goes through ``tms_console.egress`` to the addresses checked once
for the run, over the run's TLS settings, and is kept as evidence with secrets
redacted. A check ends by returning what it saw, or raising ``CheckFailed``
(with a hint on what to fix) or ``CheckSkipped`` (a prerequisite failed).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from django.conf import settings

from missions.models import CertificationRun
from missions.tendering.carrier_contract import contract_schema_errors
from tms_console.egress import EgressRefused, EgressTarget, GuardedResponse, egress_check, guarded_request

REDACTED = "[redacted]"
PROBLEM_TYPE = "application/problem+json"


class CheckFailed(Exception):
    def __init__(self, detail: str, hint: str) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


class CheckSkipped(Exception):
    pass


@dataclass
class Session:
    """What one run learns as it goes: the base URL, the token, the tender, every call's time."""

    run: CertificationRun
    base: str
    client_id: str
    client_secret: str
    token: str = ""
    ref: str = ""
    status: str = ""  # the tender's status as last answered
    body: dict[str, Any] = field(default_factory=dict)
    timings_ms: list[float] = field(default_factory=list)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    target: EgressTarget | None = None
    # TLS: how the sandbox's certificate is verified, and the client certificate presented (mTLS / SVID).
    verify: Any = True
    cert: tuple[str, str] | None = None
    peer_certificate: bytes | None = None
    emitted_at: datetime | None = None

    def key(self, name: str) -> str:
        return str(uuid.uuid5(self.run.run_key, name))

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> GuardedResponse:
        sent = {"Accept": "application/json", **(headers or {})}
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        elif form is not None:
            content = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if auth and self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        url = f"{self.base}{path}"
        record: dict[str, Any] = {
            "request": {
                "method": method,
                "url": url,
                "headers": redact_headers(sent),
                "body": redact_body(json_body, form),
            }
        }
        self.evidence.append(record)
        try:
            if self.target is None:  # checked once a run: every call goes to the addresses checked then
                self.target = egress_check(self.base)
            answer = guarded_request(
                method,
                url,
                headers=sent,
                content=content,
                timeout=settings.CERTIFICATION_CALL_TIMEOUT_SECONDS,
                target=self.target,
                verify=self.verify,
                cert=self.cert,
            )
        except EgressRefused as exc:
            record["error"] = str(exc)
            raise CheckFailed(str(exc), "Answer within the time limit and keep answers small.") from exc
        except (httpx.HTTPError, OSError) as exc:  # connect, TLS, protocol
            record["error"] = f"{exc.__class__.__name__}: {exc}"
            raise CheckFailed(
                f"The call failed ({exc.__class__.__name__}: {exc}).",
                "Check that the sandbox URL is right, reachable over the internet and serving valid TLS.",
            ) from exc
        self.timings_ms.append(answer.elapsed_seconds * 1000)
        self.peer_certificate = answer.peer_certificate or self.peer_certificate
        record["response"] = {
            "status": answer.status_code,
            "content_type": answer.headers.get("content-type", ""),
            "ms": round(answer.elapsed_seconds * 1000, 1),
            "body": redact_text(answer.content),
        }
        return answer


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: (REDACTED if k.lower() == "authorization" else v) for k, v in headers.items()}


def redact_body(json_body: Any, form: dict[str, str] | None) -> Any:
    if form is not None:
        return {k: (REDACTED if k == "client_secret" else v) for k, v in form.items()}
    return json_body


def redact_text(content: bytes) -> Any:
    text = content[:4096].decode("utf-8", "replace")
    try:
        body = json.loads(content)
    except ValueError:
        return text
    if isinstance(body, dict) and "access_token" in body:
        body = {**body, "access_token": REDACTED}
    return body


def json_of(answer: GuardedResponse, what: str) -> Any:
    try:
        return answer.json()
    except ValueError as exc:
        raise CheckFailed(f"{what} is not JSON.", "Answer with a JSON body (Content-Type application/json).") from exc


def expect_status(answer: GuardedResponse, allowed: tuple[int, ...], hint: str) -> None:
    if answer.status_code not in allowed:
        wanted = " or ".join(str(s) for s in allowed)
        raise CheckFailed(f"Expected {wanted}, got {answer.status_code}.", hint)


def expect_schema(body: Any, schema: str, hint: str) -> None:
    errors = contract_schema_errors(schema=schema, body=body)
    if errors:
        raise CheckFailed(f"The answer breaks {schema}: " + "; ".join(errors[:3]), hint)


def expect_problem(answer: GuardedResponse, hint: str) -> None:
    media = answer.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != PROBLEM_TYPE:
        raise CheckFailed(f"The error came as {media or 'no content type'}, not {PROBLEM_TYPE}.", hint)
    expect_schema(json_of(answer, "The problem document"), "Problem", hint)
