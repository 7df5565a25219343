"""Request and response shapes of the partner API (parse input, render output; no writes here)."""

from __future__ import annotations

import json
from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from missions.choices import AutonomyMode, ExceptionKind, MissionStatus, OfferKind
from missions.models import Mission, MissionException, Offer, Shipment, Tender
from missions.partner.api.fields import MoneyField, Rfc3339DateTimeField, StrictCharField, StrictChoiceField

# Statuses a carrier may report; cancelling and handing over are decisions taken on our side.
CARRIER_MISSION_STATUSES = [
    MissionStatus.EN_ROUTE,
    MissionStatus.ARRIVING,
    MissionStatus.UNLOADING,
    MissionStatus.SUSPENDED,
    MissionStatus.COMPLETED,
    MissionStatus.FAILED,
]
CARRIER_MISSION_STATUS_CHOICES = [(s.value, s.label) for s in CARRIER_MISSION_STATUSES]
# An answer may name a price; a counter-offer must (the schema states it with one shape per kind).
OFFER_ANSWER_KIND_CHOICES = [(k.value, k.label) for k in (OfferKind.ACCEPT, OfferKind.REJECT)]
OFFER_COUNTER_KIND_CHOICES = [(OfferKind.COUNTER.value, OfferKind.COUNTER.label)]
MAX_METADATA_BYTES = 8192


def _small_json(value: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(value, default=str)) > MAX_METADATA_BYTES:
        raise serializers.ValidationError(f"At most {MAX_METADATA_BYTES} bytes of JSON.")
    return value


class ProblemSerializer(serializers.Serializer[dict[str, Any]]):
    """RFC 9457 problem details, with ``errors`` pointing at failing fields."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(required=False)  # type: ignore[assignment]
    errors = serializers.ListField(  # type: ignore[assignment]
        child=serializers.DictField(child=serializers.CharField()), required=False
    )


class PlaceSerializer(serializers.Serializer[dict[str, Any]]):
    """An address with its state code and coordinates."""

    address = serializers.CharField()
    region = serializers.CharField()
    lat = serializers.FloatField()
    lon = serializers.FloatField()


class ShipmentSummarySerializer(serializers.Serializer[Any]):
    """What a carrier needs to know about the load behind a tender."""

    reference = serializers.CharField()
    origin = PlaceSerializer()
    destination = PlaceSerializer()
    pickup_window_start = serializers.DateTimeField()
    pickup_window_end = serializers.DateTimeField()
    delivery_window_start = serializers.DateTimeField()
    delivery_window_end = serializers.DateTimeField()
    weight_kg = serializers.IntegerField()
    hazmat = serializers.BooleanField()
    needs_night_operations = serializers.BooleanField(help_text="The windows can only be met by driving at night")
    max_autonomy_level = serializers.IntegerField(allow_null=True)
    preferred_route = serializers.CharField(allow_blank=True)

    def to_representation(self, instance: Shipment) -> dict[str, Any]:
        s = instance
        return super().to_representation(
            {
                "reference": s.reference,
                "origin": {"address": s.origin_address, "region": s.origin_region, "lat": s.origin_lat,
                           "lon": s.origin_lon},
                "destination": {"address": s.destination_address, "region": s.destination_region,
                                "lat": s.destination_lat, "lon": s.destination_lon},
                "pickup_window_start": s.pickup_window_start,
                "pickup_window_end": s.pickup_window_end,
                "delivery_window_start": s.delivery_window_start,
                "delivery_window_end": s.delivery_window_end,
                "weight_kg": s.weight_kg,
                "hazmat": s.hazmat,
                "needs_night_operations": s.needs_night_operations,
                "max_autonomy_level": s.max_autonomy_level,
                "preferred_route": s.preferred_route,
            }
        )  # fmt: skip


class TenderSerializer(serializers.ModelSerializer[Tender]):
    # A nested serializer, built once per answer (a page's rows share it), not once per row.
    shipment = ShipmentSummarySerializer(read_only=True)

    class Meta:
        model = Tender
        fields = [
            "id",
            "status",
            "offered_price_usd",
            "expires_at",
            "correlation_id",
            "shipment",
            "created_at",
            "updated_at",
        ]


class OfferRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """Accept, reject or counter a tender. A counter needs a price; an accept may name the vehicle."""

    kind = StrictChoiceField(choices=OfferKind.choices)
    price_usd = MoneyField(required=False, allow_null=True)
    vehicle_external_id = StrictCharField(max_length=100, required=False, allow_blank=True)
    route_id = StrictCharField(max_length=100, required=False, allow_blank=True)
    eta = Rfc3339DateTimeField(required=False, allow_null=True)
    autonomy_mode = StrictChoiceField(choices=AutonomyMode.choices, required=False)
    reason = StrictCharField(max_length=300, required=False, allow_blank=True)
    metadata = serializers.DictField(
        required=False, help_text=f"Any JSON object of at most {MAX_METADATA_BYTES} bytes once serialized."
    )

    def validate_metadata(self, value: dict[str, Any]) -> dict[str, Any]:
        return _small_json(value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["kind"] == OfferKind.COUNTER and attrs.get("price_usd") is None:
            raise serializers.ValidationError({"price_usd": "A counter-offer needs a price."})
        return attrs


class OfferAnswerSerializer(OfferRequestSerializer):
    """Accept or reject a tender; a price is optional."""

    kind = StrictChoiceField(choices=OFFER_ANSWER_KIND_CHOICES)


class OfferCounterSerializer(OfferRequestSerializer):
    """Counter a tender with the price the carrier asks."""

    kind = StrictChoiceField(choices=OFFER_COUNTER_KIND_CHOICES)
    price_usd = MoneyField()


# The request body as the schema documents it: the shape depends on ``kind`` (``OfferRequestSerializer``
# parses all three and checks the same rule).
OFFER_REQUEST_SCHEMA = PolymorphicProxySerializer(
    component_name="OfferRequest",
    serializers={
        OfferKind.ACCEPT.value: OfferAnswerSerializer,
        OfferKind.REJECT.value: OfferAnswerSerializer,
        OfferKind.COUNTER.value: OfferCounterSerializer,
    },
    resource_type_field_name="kind",
)


class OfferSerializer(serializers.ModelSerializer[Offer]):
    tender_status = serializers.CharField(source="tender.status", read_only=True)
    mission_id = serializers.SerializerMethodField()

    class Meta:
        model = Offer
        fields = [
            "id",
            "tender",
            "kind",
            "price_usd",
            "vehicle_external_id",
            "route_id",
            "eta",
            "autonomy_mode",
            "reason",
            "metadata",
            "received_at",
            "tender_status",
            "mission_id",
        ]

    def get_mission_id(self, offer: Offer) -> int | None:
        mission = Mission.objects.filter(tender_id=offer.tender_id).values_list("pk", flat=True).first()
        return mission


class MissionSerializer(serializers.ModelSerializer[Mission]):
    shipment_reference = serializers.CharField(source="shipment.reference", read_only=True)
    vehicle_id = serializers.SerializerMethodField(help_text="The carrier's external vehicle id")

    class Meta:
        model = Mission
        fields = [
            "id",
            "tender",
            "shipment_reference",
            "status",
            "status_reason",
            "vehicle_id",
            "route_id",
            "eta",
            "autonomy_mode",
            "price_usd",
            "correlation_id",
            "started_at",
            "completed_at",
            "last_seen_at",
            "created_at",
            "updated_at",
        ]

    def get_vehicle_id(self, mission: Mission) -> str | None:
        return mission.vehicle.external_id if mission.vehicle else None


class MissionStatusRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """A status the carrier reports; failed and suspended need a reason."""

    status = StrictChoiceField(choices=CARRIER_MISSION_STATUS_CHOICES)
    reason = StrictCharField(max_length=300, required=False, allow_blank=True, default="")


class MissionVehicleRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """The registered truck that drives a mission booked without one."""

    vehicle_external_id = StrictCharField(max_length=100)


class AutonomyModeRequestSerializer(serializers.Serializer[dict[str, Any]]):
    mode = StrictChoiceField(choices=AutonomyMode.choices)
    reason = StrictCharField(max_length=300, required=False, allow_blank=True, default="")


class ExceptionRequestSerializer(serializers.Serializer[dict[str, Any]]):
    kind = StrictChoiceField(choices=ExceptionKind.choices)
    detail = StrictCharField(max_length=5000, required=False, allow_blank=True, default="")
    data = serializers.DictField(  # type: ignore[assignment]
        required=False, help_text=f"Any JSON object of at most {MAX_METADATA_BYTES} bytes once serialized."
    )
    occurred_at = Rfc3339DateTimeField(required=False, allow_null=True)

    def validate_data(self, value: dict[str, Any]) -> dict[str, Any]:
        return _small_json(value)


class MissionExceptionSerializer(serializers.ModelSerializer[MissionException]):
    class Meta:
        model = MissionException
        fields = [
            "id",
            "mission",
            "kind",
            "status",
            "detail",
            "data",
            "reported_by",
            "occurred_at",
            "correlation_id",
            "created_at",
        ]


class IngestRejectionSerializer(serializers.Serializer[dict[str, Any]]):
    index = serializers.IntegerField()
    reason = serializers.CharField()


class IngestResultSerializer(serializers.Serializer[dict[str, Any]]):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = IngestRejectionSerializer(many=True)


class WebhookAckSerializer(serializers.Serializer[dict[str, Any]]):
    webhook_id = serializers.CharField()
    duplicate = serializers.BooleanField()
    type = serializers.CharField()
    # Telemetry deliveries only: what was stored, and the index and reason of each rejected event.
    telemetry = IngestResultSerializer(required=False)


class CarrierFeatureFlagSerializer(serializers.Serializer[dict[str, Any]]):
    """One autonomy capability the console switches per carrier, as it stands for the calling carrier."""

    key = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]
    enabled = serializers.BooleanField()
    effect = serializers.CharField(help_text="What changes in tendering when the flag is on")


class CapabilitiesSerializer(serializers.Serializer[dict[str, Any]]):
    """What this deployment supports, so a partner adapts without a release."""

    api_version = serializers.CharField()
    schema_version = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    granted_scopes = serializers.ListField(child=serializers.CharField())
    carrier = serializers.DictField()
    telemetry = serializers.DictField()
    autonomy = serializers.DictField()
    webhooks = serializers.DictField()
    limits = serializers.DictField()
    idempotency = serializers.DictField()
    authentication = serializers.DictField()
    events = serializers.DictField(
        help_text="The event log as CloudEvents: replay over this API, the JetStream bus when on, each type's schema"
    )
    feature_flags = CarrierFeatureFlagSerializer(
        many=True, help_text="The calling carrier's feature flags (autonomy capabilities), every flag of the catalogue"
    )


class ReplayedEventSerializer(serializers.Serializer[dict[str, Any]]):
    """One entry of the durable event log (``missions.events.event_message``, console internals removed)."""

    id = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    actor = serializers.CharField(help_text="Who acted; console users appear as `console`")
    actor_kind = serializers.CharField()
    action = serializers.CharField()
    subject_type = serializers.CharField()
    subject_id = serializers.IntegerField()
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)
    data = serializers.JSONField()  # type: ignore[assignment]
    correlation_id = serializers.UUIDField(allow_null=True)
    shipment_id = serializers.IntegerField(allow_null=True)
    mission_id = serializers.IntegerField(allow_null=True)
    carrier_id = serializers.IntegerField(allow_null=True)


class EventReplaySerializer(serializers.Serializer[dict[str, Any]]):
    """A page of the event log after a cursor; call again with ``after=next_cursor`` while ``has_more``."""

    events = ReplayedEventSerializer(many=True)
    next_cursor = serializers.IntegerField(help_text="The id of the last event returned (the cursor if none)")
    has_more = serializers.BooleanField()
