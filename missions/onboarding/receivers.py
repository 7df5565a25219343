"""The receivers of a certification run: where a carrier's sandbox sends its test webhooks and telemetry.

``POST /api/v1/certification/runs/<run_key>/webhooks`` takes Standard Webhooks
signed with the sandbox webhook secret the portal issued (no token: the
signature authenticates, as on the carrier's production webhook endpoint).
``POST /api/v1/certification/runs/<run_key>/telemetry`` takes the body of
``POST /api/v1/telemetry/batch`` with a Bearer token of the sandbox's client
(scope ``certification:write``), for the mission and vehicle the emit call named.

Nothing received here touches missions or telemetry: every request, refused
or not, is kept as a ``CertificationDelivery`` with why it was refused, and the
run's carrier-side checks judge them (``missions.onboarding.certification``).
The carrier gets the same answers production would give (401 for a bad
signature or token, 400/422 problem+json for a body that breaks the schema),
so it can fix its sandbox from them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from missions.models import CertificationDelivery, CertificationRun, CertificationStatus
from missions.partner.api.telemetry_schema import TelemetryBatchSerializer, TelemetryEventSerializer
from missions.partner.api.views import PartnerView, problems
from missions.partner.api.webhook_schema import (
    WEBHOOK_DELIVERY_SCHEMA,
    WEBHOOK_PARAMETERS,
    MissionStatusDataSerializer,
)
from missions.partner.api.webhooks import WebhookEnvelopeSerializer, WebhookVerificationError, webhook_verify
from tms_console.problem import ProblemError

# A run takes this many deliveries at most: the emit asks for seconds of telemetry, not an open pipe.
DELIVERIES_PER_RUN_MAX = 500
BODY_KEPT_BYTES = 16 * 1024
KEPT_HEADERS = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "idempotency-key")


def synthetic_mission_id(run: CertificationRun) -> int:
    """The mission (and tender) id a run's emit names: far above any real one, and the run's own."""
    return 900_000_000 + run.pk


def synthetic_vehicle_id(run: CertificationRun) -> str:
    return f"cert-{run.pk}"


def _run_receiving(run_key: uuid.UUID) -> CertificationRun:
    run = CertificationRun.objects.select_related("carrier__profile").filter(run_key=run_key, kind="full").first()
    if run is None:
        raise ProblemError(404, "not-found", "No certification run has this URL.")
    if run.status != CertificationStatus.RUNNING:
        raise ProblemError(409, "run-not-running", f"Certification run {run.pk} is {run.status}: it takes nothing now.")
    if CertificationDelivery.objects.filter(run=run).count() >= DELIVERIES_PER_RUN_MAX:
        raise ProblemError(429, "too-many-deliveries", f"A run takes at most {DELIVERIES_PER_RUN_MAX} deliveries.")
    return run


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept = {name: headers.get(name, "") for name in KEPT_HEADERS if headers.get(name)}
    if headers.get("authorization"):
        kept["authorization"] = "Bearer [redacted]" if headers["authorization"].startswith("Bearer ") else "[redacted]"
    return kept


def _record(
    run: CertificationRun,
    *,
    channel: str,
    request: Request,
    body: bytes,
    reason: str = "",
    samples: list[dict[str, str]] | None = None,
) -> None:
    CertificationDelivery.objects.create(
        run=run,
        channel=channel,
        received_at=timezone.now(),
        headers={k: _storable(v) for k, v in _kept_headers(request.headers).items()},
        body=_storable(body[:BODY_KEPT_BYTES].decode("utf-8", "replace")),
        accepted=not reason,
        reason=_storable(reason[:300]),
        samples=samples or [],
    )


def _storable(text: str) -> str:
    # PostgreSQL text holds no NUL: a sender's NUL is kept as the replacement character.
    return text.replace("\x00", "\ufffd")


def _first_error(errors: Any) -> str:
    """The first message of DRF's nested error structure, with the path it sits at."""
    path: list[str] = []
    while True:
        if isinstance(errors, dict) and errors:
            key = next(iter(errors))
            path.append(str(key))
            errors = errors[key]
        elif isinstance(errors, list) and errors:
            errors = errors[0]
        else:
            break
    return f"{'/'.join(path) or 'body'}: {errors}"


class CertificationWebhookView(APIView):
    """A run's test webhooks (Standard Webhooks, signed with the sandbox webhook secret)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=WEBHOOK_DELIVERY_SCHEMA,
        parameters=WEBHOOK_PARAMETERS,
        responses={200: OpenApiResponse(description="Verified and kept for the run"), **problems(400, 401, 404, 409)},
        auth=[],
        operation_id="certification_webhook_deliver",
        tags=["certification"],
    )
    def post(self, request: Request, run_key: uuid.UUID) -> Response:
        run = _run_receiving(run_key)
        body = request.body  # the raw bytes: the signature covers them exactly
        now = timezone.now()
        secret = run.carrier.profile.sandbox_webhook_secret
        headers = {n: request.headers.get(n, "") for n in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        try:
            webhook_id = webhook_verify(
                secrets=[secret] if secret else [],
                headers=headers,
                body=body,
                now=now,
                tolerance_seconds=int(settings.WEBHOOK_TOLERANCE_SECONDS),
            )
        except WebhookVerificationError as exc:
            reason = f"The delivery does not verify: {exc}."
            _record(run, channel="webhook", request=request, body=body, reason=reason)
            raise ProblemError(401, "webhook-signature-invalid", reason) from None
        reason = _webhook_body_problem(run, body)
        _record(run, channel="webhook", request=request, body=body, reason=reason)
        if reason:
            raise ProblemError(422, "validation-error", reason)
        return Response({"webhook_id": webhook_id, "run": str(run.run_key)})


def _webhook_body_problem(run: CertificationRun, body: bytes) -> str:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return "The delivery body is not valid JSON."
    envelope = WebhookEnvelopeSerializer(data=payload)
    if not envelope.is_valid():
        return "The delivery breaks the envelope: " + _first_error(envelope.errors)
    if envelope.validated_data["type"] == "mission.status":
        data = MissionStatusDataSerializer(data=envelope.validated_data["data"])
        if not data.is_valid():
            return "The mission.status data breaks its schema: " + _first_error(data.errors)
        if data.validated_data["mission_id"] != synthetic_mission_id(run):
            return f"mission_id is {data.validated_data['mission_id']}, not the run's {synthetic_mission_id(run)}."
    return ""


class CertificationTelemetryView(PartnerView):
    """A run's test telemetry: the batch body of ``/api/v1/telemetry/batch``, with the sandbox client's token."""

    required_scopes = {"POST": "certification:write"}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            super().initial(request, *args, **kwargs)
        except APIException as exc:  # no token, a bad one, the wrong scope: kept, so the run can say so
            run = CertificationRun.objects.filter(run_key=kwargs["run_key"], kind="full").first()
            room = run is not None and CertificationDelivery.objects.filter(run=run).count() < DELIVERIES_PER_RUN_MAX
            if run is not None and run.status == CertificationStatus.RUNNING and room:
                reason = f"{exc.status_code}: {exc.detail}"
                _record(run, channel="telemetry", request=request, body=request.body, reason=reason)
            raise

    @extend_schema(
        request=TelemetryBatchSerializer,
        responses={
            202: OpenApiResponse(description="Every event conforms; kept for the run"),
            **problems(400, 401, 403, 404, 409, 413, 422),
        },
        operation_id="certification_telemetry_deliver",
        tags=["certification"],
    )
    def post(self, request: Request, run_key: uuid.UUID) -> Response:
        run = _run_receiving(run_key)
        if run.carrier_id != self.carrier.pk:
            raise ProblemError(404, "not-found", "No certification run has this URL.")
        body = request.body
        events = request.data.get("events") if isinstance(request.data, dict) else None
        limit = int(settings.API_TELEMETRY_MAX_BATCH)
        if not isinstance(events, list) or not events or len(events) > limit:
            reason = f"The body must be an object with an 'events' list of 1 to {limit} events."
            _record(run, channel="telemetry", request=request, body=body, reason=reason)
            raise ProblemError(400, "validation-error", reason)
        samples, problems_found = _samples(run, events)
        reason = "; ".join(problems_found[:3])
        _record(run, channel="telemetry", request=request, body=body, reason=reason, samples=samples)
        if problems_found:
            raise ProblemError(422, "telemetry-rejected", reason)
        return Response({"accepted": len(samples), "run": str(run.run_key)}, status=202)


def _samples(run: CertificationRun, events: list[Any]) -> tuple[list[dict[str, str]], list[str]]:
    """Each event checked against TelemetryEvent and the emit's mission and vehicle; the sample times kept."""
    samples: list[dict[str, str]] = []
    found: list[str] = []
    for index, raw in enumerate(events):
        event = TelemetryEventSerializer(data=raw)
        if not event.is_valid():
            found.append(f"event {index}: " + _first_error(event.errors))
            continue
        data = event.validated_data
        if data["mission_id"] != synthetic_mission_id(run):
            found.append(f"event {index}: mission_id is {data['mission_id']}, not {synthetic_mission_id(run)}")
        elif data["vehicle_id"] != synthetic_vehicle_id(run):
            found.append(f"event {index}: vehicle_id is {data['vehicle_id']!r}, not {synthetic_vehicle_id(run)!r}")
        ts: datetime = data["ts"]
        samples.append({"vehicle_id": str(data["vehicle_id"]), "ts": ts.isoformat(), "event_id": str(data["event_id"])})
    return samples, found
