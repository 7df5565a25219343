"""Signed webhook deliveries from carriers (Standard Webhooks).

Headers ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature`` (space-separated ``v1,<base64 HMAC-SHA256>``). The
signed content is ``id.timestamp.body`` over the raw body bytes; the key is
the base64 part of the carrier's ``whsec_`` secret. During a rotation two
secrets are valid and a signature by either is accepted. Deliveries outside
the tolerance (5 minutes either way) are refused; a redelivered
``webhook-id`` answers 200 and has no second effect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from missions import services
from missions.events import Actor
from missions.evidence.services import carrier_signed
from missions.identity.gate import meta_certificate, refusal_problem, telemetry_identity
from missions.identity.svid import SvidRefused
from missions.models import Carrier, Mission, Tender
from missions.models.partner import WebhookReceipt, WebhookSecret
from missions.partner.api.fields import ID_MAX, Rfc3339DateTimeField, StrictChoiceField
from missions.partner.api.serializers import (
    ExceptionRequestSerializer,
    MissionStatusRequestSerializer,
    OfferRequestSerializer,
    WebhookAckSerializer,
)
from missions.partner.api.throttling import PartnerClientRateThrottle
from missions.partner.api.views import problems
from missions.partner.api.webhook_schema import WEBHOOK_DELIVERY_SCHEMA, WEBHOOK_PARAMETERS
from missions.telemetry.group_commit import GroupCommitUnavailable
from missions.telemetry.ingest import BatchTooLarge, ingest_events, telemetry_batch_max
from missions.tendering import dispatch
from tms_console.problem import PROBLEM_CONTENT_TYPE, ProblemError, problem_body
from tms_console.unstorable import UnstorableString, json_parse, may_hold_unstorable, unstorable_find

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
EVENT_TYPES = ("mission.status", "mission.exception", "telemetry", "offer")


class WebhookVerificationError(Exception):
    """A delivery whose headers, timestamp or signature do not verify."""


def _secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def webhook_sign(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<signature>`` value a sender puts in ``webhook-signature``."""
    signed = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_verify(
    *, secrets: Iterable[str], headers: dict[str, str], body: bytes, now: datetime, tolerance_seconds: int
) -> str:
    """Return the verified ``webhook-id`` or raise ``WebhookVerificationError``."""
    webhook_id = headers.get("webhook-id", "")
    timestamp_raw = headers.get("webhook-timestamp", "")
    signature_header = headers.get("webhook-signature", "")
    if not webhook_id or not timestamp_raw or not signature_header:
        raise WebhookVerificationError("webhook-id, webhook-timestamp and webhook-signature are all required")
    if len(webhook_id) > 255:
        raise WebhookVerificationError("webhook-id is too long")
    try:
        timestamp = int(timestamp_raw)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance")
    presented = []
    for item in signature_header.split(" "):
        version, _, value = item.partition(",")
        if version == "v1" and value:
            try:
                presented.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
    signed = webhook_id.encode() + b"." + str(timestamp).encode() + b"." + body
    for secret in secrets:
        expected = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
        # Constant-time: the comparison must not tell an attacker how many bytes matched.
        if any(hmac.compare_digest(expected, candidate) for candidate in presented):
            return webhook_id
    raise WebhookVerificationError("no signature matches")


def carrier_webhook_secrets(carrier: Carrier, now: datetime) -> list[str]:
    return list(
        WebhookSecret.objects.filter(carrier=carrier, valid_from__lte=now)
        .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
        .values_list("secret", flat=True)
    )


class WebhookEnvelopeSerializer(serializers.Serializer[dict[str, Any]]):
    """The Standard Webhooks payload: ``type``, ``timestamp`` and ``data``."""

    type = StrictChoiceField(choices=[(t, t) for t in EVENT_TYPES])
    timestamp = Rfc3339DateTimeField(required=False)
    data = serializers.JSONField()  # type: ignore[assignment]


def _valid(serializer: serializers.Serializer[dict[str, Any]]) -> dict[str, Any]:
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _object_id(data: dict[str, Any], name: str) -> int:
    # A JSON integer, as the schema says: "7", 7.0 or true are not ids.
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ID_MAX:
        raise serializers.ValidationError({"data": {name: [f"An integer id from 1 to {ID_MAX} is required."]}})
    return value


def _mission_id(data: dict[str, Any]) -> int:
    return _object_id(data, "mission_id")


def _apply(carrier: Carrier, event_type: str, data: Any) -> None:
    """Run the effect of one verified delivery, through the same services the REST calls use."""
    actor = Actor.for_carrier(carrier)
    if not isinstance(data, dict):
        raise serializers.ValidationError({"data": ["Expected an object."]})
    if event_type == "mission.status":
        mission = get_object_or_404(Mission, pk=_mission_id(data), carrier=carrier)
        body = _valid(MissionStatusRequestSerializer(data=data))
        services.mission_transition(mission_id=mission.pk, to_status=body["status"], actor=actor, reason=body["reason"])
    elif event_type == "mission.exception":
        mission = get_object_or_404(Mission, pk=_mission_id(data), carrier=carrier)
        body = _valid(ExceptionRequestSerializer(data=data))
        services.mission_exception_report(
            mission_id=mission.pk,
            kind=body["kind"],
            actor=actor,
            detail=body["detail"],
            data=body.get("data"),
            occurred_at=body.get("occurred_at"),
        )
    elif event_type == "offer":
        tender = get_object_or_404(Tender, pk=_object_id(data, "tender_id"), carrier=carrier)
        body = _valid(OfferRequestSerializer(data=data))
        dispatch.offer_receive(
            tender_id=tender.pk,
            actor=actor,
            kind=body["kind"],
            price_usd=body.get("price_usd"),
            vehicle_external_id=body.get("vehicle_external_id", ""),
            route_id=body.get("route_id", ""),
            eta=body.get("eta"),
            autonomy_mode=body.get("autonomy_mode", ""),
            reason=body.get("reason", ""),
            metadata=body.get("metadata"),
            source="webhook",
        )
    else:  # telemetry has its own path, without a receipt: see telemetry_delivery
        raise AssertionError(f"unexpected event type {event_type!r}")


def delivery_per_item(payload: Any) -> tuple[str, ...] | None:
    """The list of a delivery judged event by event (``data.events`` of a telemetry batch), if any.

    A string that cannot be stored refuses the whole delivery (400) anywhere
    else, a single-event telemetry delivery included; inside a batch it
    refuses only its event, and the others are stored.
    """
    if isinstance(payload, dict) and payload.get("type") == "telemetry":
        data = payload.get("data")
        if isinstance(data, dict) and isinstance(data.get("events"), list):
            return ("data", "events")
    return None


def telemetry_delivery(
    *,
    carrier: Carrier,
    webhook_id: str,
    data: Any,
    material: dict[str, str],
    instance: str,
    meta: Mapping[str, Any] | None = None,
    cache: Any = None,
    group: Any = None,
) -> tuple[int, dict[str, Any]]:
    """A verified telemetry delivery: (HTTP status, body). Shared by the view and the WSGI fast path.

    No receipt row: each event carries its own id and the ingest path dedupes
    on it, so a redelivery (same ``webhook-id``, same body) stores nothing
    twice and answers ``duplicate: true``.

    ``meta`` (the WSGI environ or ``request.META``) carries the client certificate the edge
    forwarded: the vehicle's SVID where its carrier registered a trust domain (missions.identity).
    """

    if not isinstance(data, dict):
        return 422, problem_body(
            status=422, code="validation-error", detail="data: expected an object.", instance=instance
        )
    events = data.get("events", [data])
    if not isinstance(events, list) or not events:
        return 422, problem_body(
            status=422, code="validation-error", detail="data.events: expected a non-empty list.", instance=instance
        )
    pointer = "/data/events/{}" if "events" in data else "/data"
    try:
        certificate = meta_certificate(meta, path="webhook") if meta is not None else None
        identity = telemetry_identity(carrier_id=carrier.pk, certificate=certificate, events=events, path="webhook")
    except SvidRefused as refused:
        return refusal_problem(refused, instance=instance)
    vehicle_cert = identity.fingerprint if identity is not None else ""

    try:
        result = None
        if (
            group is not None
            and len(events) <= telemetry_batch_max()
            and group.groupable(events, carrier_id=carrier.pk)
        ):
            try:  # committed together with other deliveries (missions.telemetry.group_commit)
                result = group.ingest(carrier=carrier, events=events, vehicle_cert=vehicle_cert)
            except GroupCommitUnavailable:
                result = None
        if result is None:
            with carrier_signed(material):
                result = ingest_events(
                    carrier=carrier, events=events, source="webhook", cache=cache, vehicle_cert=vehicle_cert
                )
    except BatchTooLarge as exc:
        return 413, problem_body(status=413, code="batch-too-large", detail=exc.message, instance=instance)
    outcome = {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}
    if result.rejected and not result.accepted and not result.duplicates:
        first = result.rejected[0]
        return 422, problem_body(
            status=422,
            code="telemetry-rejected",
            detail=f"No event was stored; event {first['index']}: {first['reason']}",
            instance=instance,
            errors=[
                {"pointer": pointer.format(r["index"]), "detail": r["reason"], "code": "rejected"}
                for r in result.rejected
            ],
            telemetry=outcome,
        )
    duplicate = result.accepted == 0 and result.duplicates > 0
    return 200, {"webhook_id": webhook_id, "duplicate": duplicate, "type": "telemetry", "telemetry": outcome}


class CarrierWebhookView(APIView):
    """One endpoint per carrier for signed deliveries (no OAuth token: the signature authenticates)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes = [PartnerClientRateThrottle]

    @extend_schema(
        request=WEBHOOK_DELIVERY_SCHEMA,
        parameters=WEBHOOK_PARAMETERS,
        responses={200: WebhookAckSerializer, **problems(400, 401, 403, 404, 409, 413, 415, 422, 429)},
        auth=[],
        operation_id="webhook_deliver",
    )
    def post(self, request: Request, carrier_slug: str) -> Response:
        carrier = get_object_or_404(Carrier, slug=carrier_slug)
        body = request.body  # the raw bytes, read before any parsing: the signature covers them exactly
        now = timezone.now()
        headers = {
            name: request.headers.get(name, "") for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        }
        try:
            webhook_id = webhook_verify(
                secrets=carrier_webhook_secrets(carrier, now),
                headers=headers,
                body=body,
                now=now,
                tolerance_seconds=int(settings.WEBHOOK_TOLERANCE_SECONDS),
            )
        except WebhookVerificationError as exc:
            raise ProblemError(401, "webhook-signature-invalid", f"The delivery does not verify: {exc}.") from None
        if WebhookReceipt.objects.filter(carrier=carrier, webhook_id=webhook_id).exists():
            return Response({"webhook_id": webhook_id, "duplicate": True, "type": ""})
        content_type = request.content_type.split(";")[0].strip()
        if content_type != "application/json":
            raise ProblemError(415, "unsupported-media-type", "Deliveries are application/json.")
        try:
            payload = json_parse(body)
        except (ValueError, RecursionError):
            raise ProblemError(400, "malformed-request", "The delivery body is not valid JSON.") from None
        found = unstorable_find(payload, per_item=delivery_per_item(payload)) if may_hold_unstorable(body) else None
        if found is not None:
            raise UnstorableString(found)
        envelope = _valid(WebhookEnvelopeSerializer(data=payload))
        signed_by_carrier = {
            "scheme": "standard-webhooks-v1",
            **headers,
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        if envelope["type"] == "telemetry":
            code, answer = telemetry_delivery(
                carrier=carrier,
                webhook_id=webhook_id,
                data=envelope["data"],
                material=signed_by_carrier,
                instance=request.path,
                meta=request.META,
            )
            return Response(answer, status=code, content_type=None if code == 200 else PROBLEM_CONTENT_TYPE)
        try:
            with transaction.atomic():
                # The receipt and the effect commit together: a crash leaves neither, a redelivery does nothing.
                WebhookReceipt.objects.create(carrier=carrier, webhook_id=webhook_id, event_type=envelope["type"])
                # Attestations made for this delivery keep the carrier's own signature beside ours.
                with carrier_signed(signed_by_carrier):
                    _apply(carrier, envelope["type"], envelope["data"])
        except IntegrityError:
            return Response({"webhook_id": webhook_id, "duplicate": True, "type": envelope["type"]})
        return Response({"webhook_id": webhook_id, "duplicate": False, "type": envelope["type"]})
