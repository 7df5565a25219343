"""The telemetry request contract of the partner API (REST single event and batch, webhooks).

These serializers document the wire shape in the OpenAPI schema and give
field-pointed errors on the single-event endpoint. The ingest pipeline
(``missions.telemetry.normalize``) validates every event again on its hot
path with the same names and bounds, so the batch endpoint hands raw events
straight to it instead of running a serializer per event.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from missions.choices import AutonomyMode, MissionStatus
from missions.telemetry.normalize import ACCURACY_M_MAX, LATENCY_MS_MAX, SAFETY_EVENTS, SPEED_KPH_MAX, UPLINKS

TELEMETRY_FIELDS = [
    "schema_version",
    "event_id",
    "mission_id",
    "vehicle_id",
    "correlation_id",
    "ts",
    "position",
    "mission_state",
    "autonomy_mode",
    "health",
    "connectivity",
    "safety_event",
]


class StrictSerializer(serializers.Serializer[dict[str, Any]]):
    """Refuses unknown fields, as the pipeline does, so a typo is an error rather than silently dropped."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(getattr(self, "initial_data", {}) or {}) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        return attrs


class PositionSerializer(StrictSerializer):
    """WGS 84 position; speed in km/h, heading in degrees from true north, accuracy in metres."""

    lat = serializers.FloatField(min_value=-90.0, max_value=90.0)
    lon = serializers.FloatField(min_value=-180.0, max_value=180.0)
    speed_kph = serializers.FloatField(min_value=0.0, max_value=SPEED_KPH_MAX, required=False, allow_null=True)
    heading_deg = serializers.FloatField(min_value=0.0, max_value=360.0, required=False, allow_null=True)
    accuracy_m = serializers.FloatField(min_value=0.0, max_value=ACCURACY_M_MAX, required=False, allow_null=True)


class HealthSerializer(StrictSerializer):
    """Vehicle health as the autonomy stack reports it."""

    fuel_pct = serializers.FloatField(min_value=0.0, max_value=100.0, required=False, allow_null=True)
    battery_pct = serializers.FloatField(min_value=0.0, max_value=100.0, required=False, allow_null=True)
    critical_sensors_ok = serializers.BooleanField(required=False, allow_null=True)
    ecu_errors = serializers.ListField(child=serializers.CharField(max_length=32), required=False, max_length=32)
    thermal_warning = serializers.BooleanField(required=False, allow_null=True)


class ConnectivitySerializer(StrictSerializer):
    """The vehicle's uplink to its operator."""

    uplink = serializers.ChoiceField(choices=list(UPLINKS), required=False, allow_null=True)
    packet_loss_pct = serializers.FloatField(min_value=0.0, max_value=100.0, required=False, allow_null=True)
    latency_ms = serializers.FloatField(min_value=0.0, max_value=LATENCY_MS_MAX, required=False, allow_null=True)


class TelemetryEventSerializer(StrictSerializer):
    """One telemetry event; ``event_id`` is the sender's id, so a resent event is counted once."""

    schema_version = serializers.ChoiceField(choices=["1"], required=False)
    event_id = serializers.UUIDField()
    mission_id = serializers.IntegerField(min_value=1)
    vehicle_id = serializers.CharField(max_length=100, help_text="The carrier's external vehicle id")
    correlation_id = serializers.UUIDField(required=False, allow_null=True)
    ts = serializers.DateTimeField(help_text="When the sample was taken: ISO 8601 with a UTC offset")
    position = PositionSerializer()
    mission_state = serializers.ChoiceField(choices=MissionStatus.choices, required=False, allow_null=True)
    autonomy_mode = serializers.ChoiceField(choices=AutonomyMode.choices, required=False, allow_null=True)
    health = HealthSerializer(required=False, allow_null=True)
    connectivity = ConnectivitySerializer(required=False, allow_null=True)
    safety_event = serializers.ChoiceField(choices=list(SAFETY_EVENTS), required=False, allow_null=True)


class TelemetryBatchSerializer(serializers.Serializer[dict[str, Any]]):
    """A batch of events; each is accepted or rejected on its own (``rejected`` lists index and reason)."""

    events = serializers.ListField(child=TelemetryEventSerializer(), allow_empty=False)
