"""The body of a signed webhook delivery as the schema documents it: one envelope shape per ``type``.

Documentation only: ``missions.partner.api.webhooks`` parses a delivery with
``WebhookEnvelopeSerializer`` and then each ``data`` with the serializer of the
matching REST call, which is where these shapes come from (plus the id of the
mission or tender the REST call names in its path).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from missions.partner.api.fields import ID_MAX, Rfc3339DateTimeField, StrictChoiceField, StrictIntegerField
from missions.partner.api.serializers import (
    ExceptionRequestSerializer,
    MissionStatusRequestSerializer,
    OfferAnswerSerializer,
    OfferCounterSerializer,
)

MISSION_STATUS = "mission.status"
MISSION_EXCEPTION = "mission.exception"
TELEMETRY = "telemetry"
OFFER = "offer"


class MissionStatusDataSerializer(MissionStatusRequestSerializer):
    """``POST /missions/{id}/status`` as a delivery: the mission's id travels in the body."""

    mission_id = StrictIntegerField(min_value=1, max_value=ID_MAX)


class MissionExceptionDataSerializer(ExceptionRequestSerializer):
    """``POST /missions/{id}/exceptions`` as a delivery."""

    mission_id = StrictIntegerField(min_value=1, max_value=ID_MAX)


class OfferAnswerDataSerializer(OfferAnswerSerializer):
    """Accept or reject a tender by delivery."""

    tender_id = StrictIntegerField(min_value=1, max_value=ID_MAX)


class OfferCounterDataSerializer(OfferCounterSerializer):
    """Counter a tender by delivery."""

    tender_id = StrictIntegerField(min_value=1, max_value=ID_MAX)


@extend_schema_field(
    {
        "description": "One TelemetryEvent, or `{events: [...]}` with up to `limits.max_batch_events` of them; "
        "each event is judged on its own as in `POST /telemetry/batch`.",
        "anyOf": [
            {"$ref": "#/components/schemas/TelemetryEventRequest"},
            {
                "type": "object",
                "properties": {
                    "events": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": settings.API_TELEMETRY_MAX_BATCH,
                        "items": {"$ref": "#/components/schemas/TelemetryBatchItem"},
                    }
                },
                "required": ["events"],
            },
        ],
    }
)
class TelemetryDataField(serializers.JSONField):
    """The ``data`` of a telemetry delivery (judged by the ingest pipeline, not by a serializer)."""


class DeliverySerializer(serializers.Serializer[dict[str, Any]]):
    """Fields every delivery has besides ``type`` and ``data``."""

    timestamp = Rfc3339DateTimeField(required=False, help_text="When the carrier emitted the event")


class MissionStatusDeliverySerializer(DeliverySerializer):
    """A mission status report (as ``POST /missions/{id}/status``)."""

    type = StrictChoiceField(choices=[(MISSION_STATUS, MISSION_STATUS)])
    data = MissionStatusDataSerializer()  # type: ignore[assignment]


class MissionExceptionDeliverySerializer(DeliverySerializer):
    """A mission exception (as ``POST /missions/{id}/exceptions``)."""

    type = StrictChoiceField(choices=[(MISSION_EXCEPTION, MISSION_EXCEPTION)])
    data = MissionExceptionDataSerializer()  # type: ignore[assignment]


class OfferDeliverySerializer(DeliverySerializer):
    """An answer to a tender (as ``POST /tenders/{id}/offers``)."""

    type = StrictChoiceField(choices=[(OFFER, OFFER)])
    data = PolymorphicProxySerializer(  # type: ignore[assignment]
        component_name="OfferDeliveryData",
        serializers={
            "accept": OfferAnswerDataSerializer,
            "reject": OfferAnswerDataSerializer,
            "counter": OfferCounterDataSerializer,
        },
        resource_type_field_name="kind",
    )


class TelemetryDeliverySerializer(DeliverySerializer):
    """Telemetry: one event or a batch (as ``POST /telemetry`` and ``POST /telemetry/batch``)."""

    type = StrictChoiceField(choices=[(TELEMETRY, TELEMETRY)])
    data = TelemetryDataField()  # type: ignore[assignment]


WEBHOOK_DELIVERY_SCHEMA = PolymorphicProxySerializer(
    component_name="WebhookDelivery",
    serializers={
        MISSION_STATUS: MissionStatusDeliverySerializer,
        MISSION_EXCEPTION: MissionExceptionDeliverySerializer,
        OFFER: OfferDeliverySerializer,
        TELEMETRY: TelemetryDeliverySerializer,
    },
    resource_type_field_name="type",
)


# The carrier's slug (a Django slug, as registered) and the Standard Webhooks headers; a header
# missing or malformed is a 401 (the delivery does not verify), an unknown carrier a 404.
WEBHOOK_PARAMETERS = [
    OpenApiParameter(
        "carrier_slug",
        {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$", "maxLength": 60},
        OpenApiParameter.PATH,
        description="The carrier's slug, as registered with its webhook secret.",
    ),
    OpenApiParameter(
        "webhook-id",
        {"type": "string", "minLength": 1, "maxLength": 255},
        OpenApiParameter.HEADER,
        required=True,
        description="The sender's unique id of this message; a redelivery repeats it and has no second effect.",
    ),
    OpenApiParameter(
        "webhook-timestamp",
        {"type": "string", "pattern": "^[0-9]+$"},
        OpenApiParameter.HEADER,
        required=True,
        description="Unix seconds when the delivery was signed; refused outside the tolerance (capabilities).",
    ),
    OpenApiParameter(
        "webhook-signature",
        {"type": "string", "minLength": 1},
        OpenApiParameter.HEADER,
        required=True,
        description="Space-separated `v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the carrier's secret.",
    ),
]
