"""Partner API v1 views: authenticate, check scope, parse, call a service, render (DESIGN.md §4.5)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from missions import services
from missions.bus.types import EVENT_ACTIONS, TELEMETRY_TYPE, cloudevent_type, schema_file_name
from missions.choices import AutonomyMode, ExceptionKind, MissionStatus, TenderStatus
from missions.events import Actor, replay_payload
from missions.flags import CARRIER_FLAGS, carrier_flag_states
from missions.models import Carrier, Mission, Offer, Tender
from missions.models.partner import PARTNER_SCOPES
from missions.partner.api.authentication import PartnerPrincipal
from missions.partner.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from missions.partner.api.idempotency import idempotent
from missions.partner.api.limits import RATELIMIT_DRAFT, published_budgets, published_policies
from missions.partner.api.query import ChoiceQuery, IntegerQuery
from missions.partner.api.serializers import (
    OFFER_REQUEST_SCHEMA,
    AutonomyModeRequestSerializer,
    CapabilitiesSerializer,
    EventReplaySerializer,
    ExceptionRequestSerializer,
    IngestResultSerializer,
    MissionExceptionSerializer,
    MissionSerializer,
    MissionStatusRequestSerializer,
    MissionVehicleRequestSerializer,
    OfferRequestSerializer,
    OfferSerializer,
    ProblemSerializer,
    TenderSerializer,
)
from missions.partner.api.telemetry_schema import TELEMETRY_FIELDS, TelemetryBatchSerializer, TelemetryEventSerializer
from missions.telemetry.admission import IngestBusy, batch_admission
from missions.telemetry.backfill import MAX_LINE_BYTES as BACKFILL_MAX_LINE_BYTES
from missions.telemetry.ingest import carrier_cache, ingest_events
from missions.telemetry.replay import REPLAY_LIMIT_MAX, events_after
from missions.tendering import dispatch
from missions.vehicles import mission_vehicle_assign
from tms_console.metrics import telemetry_batch_busy
from tms_console.problem import PROBLEM_CONTENT_TYPE, ProblemError

API_VERSION = "1.0"


def problems(*codes: int) -> dict[Any, Any]:
    """Schema entries for the problem+json answers an operation can give."""
    return {(code, PROBLEM_CONTENT_TYPE): ProblemSerializer for code in codes}


COMMON_READ = (401, 403, 404, 429)
COMMON_WRITE = (400, 401, 403, 404, 409, 413, 415, 422, 429)
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="A unique key per logical request (draft-ietf-httpapi-idempotency-key-header); "
    "a retry with the same key and body replays the first answer.",
)


class PartnerView(APIView):
    """Base of every partner endpoint: the calling carrier and its actor."""

    required_scopes: dict[str, str] = {}

    @property
    def principal(self) -> PartnerPrincipal:
        principal = self.request.user
        assert isinstance(principal, PartnerPrincipal)
        return principal

    @property
    def carrier(self) -> Carrier:
        return self.principal.carrier

    @property
    def actor(self) -> Actor:
        return Actor.for_carrier(self.carrier)


TENDER_STATUS_QUERY = ChoiceQuery("status", list(TenderStatus.values), "Only tenders in this status.")
MISSION_STATUS_QUERY = ChoiceQuery("status", list(MissionStatus.values), "Only missions in this status.")
EVENTS_AFTER_QUERY = IntegerQuery("after", 0, 2**62, "Cursor: the id of the last event seen (0: from the start).")
EVENTS_LIMIT_QUERY = IntegerQuery("limit", 1, REPLAY_LIMIT_MAX, "At most this many events (default 100).")


def events_capabilities() -> dict[str, Any]:
    """The event log's formats: the replay endpoint, the bus (when on) and each CloudEvents type with its schema."""
    return {
        "replay": "/api/v1/events",
        "format": "CloudEvents 1.0, structured JSON (the bus); the replay returns the same data",
        "bus": (
            {
                "transport": "NATS JetStream",
                "streams": {"events": settings.BUS_EVENTS_STREAM, "telemetry": settings.BUS_TELEMETRY_STREAM},
                "subjects": f"{settings.BUS_SUBJECT_PREFIX}.events.<carrier>.<subject_type>.<verb>",
                "dedupe": "Nats-Msg-Id = CloudEvent id",
            }
            if settings.NATS_URL
            else None
        ),
        "types": [
            {"type": cloudevent_type(action), "schema": f"docs/events/{schema_file_name(cloudevent_type(action))}"}
            for action in sorted(EVENT_ACTIONS)
        ]
        + [{"type": TELEMETRY_TYPE, "schema": f"docs/events/{schema_file_name(TELEMETRY_TYPE)}"}],
    }


class CapabilitiesView(PartnerView):
    """API and schema versions, telemetry contract, autonomy features and limits."""

    @extend_schema(responses={200: CapabilitiesSerializer, **problems(401, 429)}, operation_id="capabilities")
    def get(self, request: Request) -> Response:
        body = {
            "api_version": API_VERSION,
            "schema_version": settings.SPECTACULAR_SETTINGS["VERSION"],
            "scopes": sorted(PARTNER_SCOPES),
            "granted_scopes": sorted(self.principal.scopes),
            "carrier": {"slug": self.carrier.slug, "require_mtls": self.carrier.require_mtls},
            "telemetry": {
                "fields": TELEMETRY_FIELDS,
                "transports": ["rest", "rest-batch", "rest-backfill", "webhook", "mqtt", "websocket"],
                "max_batch_events": settings.API_TELEMETRY_MAX_BATCH,
                # Store-and-forward uploads (missions.partner.api.backfill).
                "backfill": {
                    "path": "/api/v1/telemetry/backfill",
                    "media_type": "application/x-ndjson",
                    "max_lines": settings.TELEMETRY_BACKFILL_MAX_LINES,
                    "max_body_bytes": settings.TELEMETRY_BACKFILL_MAX_BODY_BYTES,
                    "max_line_bytes": BACKFILL_MAX_LINE_BYTES,
                    "max_event_age_seconds": settings.TELEMETRY_MAX_AGE_SECONDS,
                },
            },
            "autonomy": {
                "modes": list(AutonomyMode.values),
                "exception_kinds": list(ExceptionKind.values),
                "mission_statuses": list(MissionStatus.values),
            },
            "webhooks": {
                "signature": "standard-webhooks v1 (HMAC-SHA256)",
                "tolerance_seconds": settings.WEBHOOK_TOLERANCE_SECONDS,
                "event_types": ["mission.status", "mission.exception", "telemetry", "offer"],
            },
            "limits": {
                "rate_limit": settings.API_RATE_LIMIT,
                # The RateLimit-Policy items answers carry (draft-ietf-httpapi-ratelimit-headers).
                "rate_limit_fields": RATELIMIT_DRAFT,
                "rate_limit_policies": published_policies(),
                "failed_authentication_budgets": published_budgets(),
                "max_body_bytes": settings.API_MAX_BODY_BYTES,
                "max_page_size": settings.API_MAX_PAGE_SIZE,
                "max_batch_events": settings.API_TELEMETRY_MAX_BATCH,
                "max_backfill_lines": settings.TELEMETRY_BACKFILL_MAX_LINES,
                "max_backfill_body_bytes": settings.TELEMETRY_BACKFILL_MAX_BODY_BYTES,
            },
            "idempotency": {"header": IDEMPOTENCY_HEADER, "retention_hours": settings.IDEMPOTENCY_RETENTION_HOURS},
            "authentication": {
                "token_url": "/oauth2/token",
                "grant_types": ["client_credentials"],
                "access_token_lifetime_seconds": settings.OAUTH2_PROVIDER["ACCESS_TOKEN_EXPIRE_SECONDS"],
                "certificate_bound_tokens": "RFC 8705 x5t#S256",
            },
            "events": events_capabilities(),
            "feature_flags": [
                {"key": key, "label": CARRIER_FLAGS[key].label, "enabled": enabled, "effect": CARRIER_FLAGS[key].effect}
                for key, enabled in carrier_flag_states(self.carrier).items()
            ],
        }
        return Response(CapabilitiesSerializer(body).data)


class TenderListView(PartnerView, generics.ListAPIView[Tender]):
    """Tenders addressed to the calling carrier, newest first."""

    serializer_class = TenderSerializer
    required_scopes = {"GET": "tender:read"}

    def get_queryset(self) -> QuerySet[Tender]:
        qs = Tender.objects.filter(carrier=self.carrier).select_related("shipment").order_by("-created_at", "-id")
        wanted = TENDER_STATUS_QUERY.parse(self.request)
        return qs.filter(status=wanted) if wanted else qs

    @extend_schema(
        parameters=[TENDER_STATUS_QUERY.parameter()],
        responses={200: TenderSerializer(many=True), **problems(400, *COMMON_READ)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class TenderDetailView(PartnerView, generics.RetrieveAPIView[Tender]):
    """One tender addressed to the calling carrier."""

    serializer_class = TenderSerializer
    required_scopes = {"GET": "tender:read"}

    def get_queryset(self) -> QuerySet[Tender]:
        return Tender.objects.filter(carrier=self.carrier).select_related("shipment")

    @extend_schema(responses={200: TenderSerializer, **problems(*COMMON_READ)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class TenderOfferView(PartnerView):
    """Accept, reject or counter one of the carrier's tenders."""

    required_scopes = {"POST": "tender:write"}

    @extend_schema(
        request=OFFER_REQUEST_SCHEMA,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: OfferSerializer, **problems(*COMMON_WRITE)},
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        tender = get_object_or_404(Tender, pk=pk, carrier=self.carrier)
        serializer = OfferRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        offer = dispatch.offer_receive(
            tender_id=tender.pk,
            actor=self.actor,
            kind=data["kind"],
            price_usd=data.get("price_usd"),
            vehicle_external_id=data.get("vehicle_external_id", ""),
            route_id=data.get("route_id", ""),
            eta=data.get("eta"),
            autonomy_mode=data.get("autonomy_mode", ""),
            reason=data.get("reason", ""),
            metadata=data.get("metadata"),
            source="api",
        )
        # The offer with its tender's status after the answer, in one query.
        offer = Offer.objects.select_related("tender").get(pk=offer.pk)
        return Response(OfferSerializer(offer).data, status=status.HTTP_201_CREATED)


class MissionListView(PartnerView, generics.ListAPIView[Mission]):
    """The calling carrier's missions, newest first."""

    serializer_class = MissionSerializer
    required_scopes = {"GET": "missions:read"}

    def get_queryset(self) -> QuerySet[Mission]:
        qs = Mission.objects.filter(carrier=self.carrier).select_related("shipment", "vehicle")
        wanted = MISSION_STATUS_QUERY.parse(self.request)
        return qs.filter(status=wanted).order_by("-created_at", "-id") if wanted else qs.order_by("-created_at", "-id")

    @extend_schema(
        parameters=[MISSION_STATUS_QUERY.parameter()],
        responses={200: MissionSerializer(many=True), **problems(400, *COMMON_READ)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class MissionDetailView(PartnerView, generics.RetrieveAPIView[Mission]):
    """One of the calling carrier's missions."""

    serializer_class = MissionSerializer
    required_scopes = {"GET": "missions:read"}

    def get_queryset(self) -> QuerySet[Mission]:
        return Mission.objects.filter(carrier=self.carrier).select_related("shipment", "vehicle")

    @extend_schema(responses={200: MissionSerializer, **problems(*COMMON_READ)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


def _own_mission(carrier: Carrier, pk: int) -> Mission:
    return get_object_or_404(Mission, pk=pk, carrier=carrier)


class MissionStatusView(PartnerView):
    """Report a mission status (en route, arriving, unloading, completed, failed, suspended)."""

    required_scopes = {"POST": "missions:write"}

    @extend_schema(
        request=MissionStatusRequestSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: MissionSerializer, **problems(*COMMON_WRITE)},
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        mission = _own_mission(self.carrier, pk)
        serializer = MissionStatusRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        mission = services.mission_transition(
            mission_id=mission.pk,
            to_status=serializer.validated_data["status"],
            actor=self.actor,
            reason=serializer.validated_data["reason"],
        )
        return Response(MissionSerializer(mission).data)


class MissionVehicleView(PartnerView):
    """Name the truck of a mission booked without one (a fallback load accepted on a standing agreement).

    The same truck again answers the mission unchanged; another truck, or any truck for a finished
    mission, is a conflict.
    """

    required_scopes = {"POST": "missions:write"}

    @extend_schema(
        request=MissionVehicleRequestSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: MissionSerializer, **problems(*COMMON_WRITE)},
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        mission = _own_mission(self.carrier, pk)
        serializer = MissionVehicleRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        mission = mission_vehicle_assign(
            mission_id=mission.pk,
            vehicle_external_id=serializer.validated_data["vehicle_external_id"],
            actor=self.actor,
        )
        return Response(MissionSerializer(mission).data)


class MissionAutonomyView(PartnerView):
    """Report a change of autonomy mode (autonomous, supervised, manual, safe hold)."""

    required_scopes = {"POST": "missions:write"}

    @extend_schema(
        request=AutonomyModeRequestSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: MissionSerializer, **problems(*COMMON_WRITE)},
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        mission = _own_mission(self.carrier, pk)
        serializer = AutonomyModeRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        mission = services.mission_autonomy_change(
            mission_id=mission.pk,
            mode=serializer.validated_data["mode"],
            actor=self.actor,
            reason=serializer.validated_data["reason"],
        )
        return Response(MissionSerializer(mission).data)


class MissionExceptionView(PartnerView):
    """Report an exception on a mission (lost comms, degraded sensors, emergency stop...)."""

    required_scopes = {"POST": "exceptions:write"}

    @extend_schema(
        request=ExceptionRequestSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: MissionExceptionSerializer, **problems(*COMMON_WRITE)},
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        mission = _own_mission(self.carrier, pk)
        serializer = ExceptionRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        exc = services.mission_exception_report(
            mission_id=mission.pk,
            kind=data["kind"],
            actor=self.actor,
            detail=data["detail"],
            data=data.get("data"),
            occurred_at=data.get("occurred_at"),
        )
        return Response(MissionExceptionSerializer(exc).data, status=status.HTTP_201_CREATED)


def telemetry_accept(*, carrier: Carrier, raw_events: list[Any], source: str) -> dict[str, Any]:
    """Hand raw events to the ingest pipeline, which validates, checks ownership and dedupes each one.

    Rejections keep the index of the event in the request, so a partner can resend just those.
    """
    result = ingest_events(carrier=carrier, events=raw_events, source=source, cache=carrier_cache(carrier.pk))
    return {
        "accepted": result.accepted,
        "duplicates": getattr(result, "duplicates", 0),
        "rejected": [{"index": int(r["index"]), "reason": str(r["reason"])} for r in result.rejected],
    }


class TelemetryView(PartnerView):
    """One telemetry event."""

    required_scopes = {"POST": "telemetry:write"}

    @extend_schema(
        request=TelemetryEventSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: IngestResultSerializer, **problems(*COMMON_WRITE)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = TelemetryEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        _own_mission(self.carrier, serializer.validated_data["mission_id"])
        result = telemetry_accept(carrier=self.carrier, raw_events=[request.data], source="api")
        if result["rejected"] and not result["accepted"]:
            raise ProblemError(
                422,
                "telemetry-rejected",
                result["rejected"][0]["reason"],
                errors=[{"pointer": "", "detail": result["rejected"][0]["reason"], "code": "rejected"}],
            )
        return Response(IngestResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)


class TelemetryBatchView(PartnerView):
    """Up to ``max_batch_events`` events; each is accepted or rejected on its own."""

    required_scopes = {"POST": "telemetry:write"}
    # An event holding an unstorable string is refused on its own by the normalizer, not the whole batch.
    unstorable_per_item = ("events",)

    @extend_schema(
        request=TelemetryBatchSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={202: IngestResultSerializer, **problems(400, 401, 403, 409, 413, 415, 422, 429, 503)},
    )
    def post(self, request: Request) -> Response:
        # A turn first: a refused batch has not claimed its Idempotency-Key, and its retry is new.
        try:
            with batch_admission().turn():
                return self._accept(request)
        except IngestBusy as busy:
            telemetry_batch_busy(request._request)
            raise ProblemError(503, "ingest-busy", str(busy), headers={"Retry-After": str(busy.retry_after)}) from None

    @idempotent
    def _accept(self, request: Request) -> Response:
        events = request.data.get("events") if isinstance(request.data, dict) else None
        if not isinstance(events, list) or not events:
            raise ProblemError(
                400,
                "validation-error",
                "The body must be an object with a non-empty 'events' list.",
                errors=[{"pointer": "/events", "detail": "A non-empty list is required.", "code": "required"}],
            )
        limit = int(settings.API_TELEMETRY_MAX_BATCH)
        if len(events) > limit:
            raise ProblemError(
                413,
                "batch-too-large",
                f"A batch holds at most {limit} events; this one has {len(events)}.",
                max_batch_events=limit,
            )
        result = telemetry_accept(carrier=self.carrier, raw_events=events, source="api-batch")
        return Response(IngestResultSerializer(result).data, status=status.HTTP_202_ACCEPTED)


class EventReplayView(PartnerView):
    """The durable event log of the caller's missions after a cursor (the last event id seen)."""

    required_scopes = {"GET": "missions:read"}

    @extend_schema(
        parameters=[EVENTS_AFTER_QUERY.parameter(), EVENTS_LIMIT_QUERY.parameter()],
        responses={200: EventReplaySerializer, **problems(400, 401, 403, 429)},
        operation_id="events_replay",
    )
    def get(self, request: Request) -> Response:

        after = EVENTS_AFTER_QUERY.parse(request, default=0)
        limit = EVENTS_LIMIT_QUERY.parse(request, default=100)
        rows = list(events_after(carrier_id=self.carrier.pk, after=after, limit=limit))
        events = [replay_payload(e) for e in rows]  # a partner has no use for console internals
        return Response(
            {"events": events, "next_cursor": rows[-1].pk if rows else after, "has_more": len(rows) == limit}
        )
