"""The hand-written validator: precise reasons for bad input, never an exception."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from missions.telemetry.normalize import TelemetryEvent, event_validate
from tests.unstorable import encode, injected
from tms_console.unstorable import json_parse, unstorable_char

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def good(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "mission_id": 7,
        "vehicle_id": "TRK-1",
        "correlation_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "ts": "2026-11-26T11:59:59.500Z",
        "position": {"lat": 32.7767, "lon": -96.797, "speed_kph": 90, "heading_deg": 180.5, "accuracy_m": 2.5},
        "mission_state": "en_route",
        "health": {"fuel_pct": 55.5, "critical_sensors_ok": True, "ecu_errors": ["P0301"], "thermal_warning": False},
        "connectivity": {"uplink": "satellite", "packet_loss_pct": 1.5, "latency_ms": 600},
        "safety_event": "emergency_stop",
        "autonomy_mode": "supervised",
    }
    event.update(overrides)
    return event


def validate(raw: Any) -> TelemetryEvent | str:
    return event_validate(raw, now=NOW, max_future=timedelta(minutes=5), max_age=timedelta(hours=24))


def test_a_complete_event_is_normalized() -> None:
    ev = validate(good(ts="2026-11-26T06:59:59.5-05:00"))
    assert isinstance(ev, TelemetryEvent)
    assert ev.event_id == uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    assert ev.ts == datetime(2026, 11, 26, 11, 59, 59, 500000, tzinfo=UTC)
    assert ev.speed_kph == 90.0 and isinstance(ev.speed_kph, float)
    assert ev.health["ecu_errors"] == ["P0301"]
    wire = ev.to_wire()
    assert wire["ts"] == "2026-11-26T11:59:59.500Z"
    assert wire["schema_version"] == "1"
    assert wire["position"]["lat"] == 32.7767


def test_minimal_event_is_accepted() -> None:
    raw = {k: good()[k] for k in ("event_id", "mission_id", "vehicle_id", "ts")}
    raw["position"] = {"lat": 0, "lon": 0}
    ev = validate(raw)
    assert isinstance(ev, TelemetryEvent)
    assert ev.correlation_id is None and ev.health == {} and ev.safety_event is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"position": {"lat": 91, "lon": 0}}, "position.lat: 91 is out of range [-90, 90]"),
        ({"position": {"lat": 0, "lon": -180.5}}, "position.lon: -180.5 is out of range [-180, 180]"),
        ({"position": {"lat": "32", "lon": 0}}, "position.lat: expected a number, got a string"),
        ({"position": {"lat": True, "lon": 0}}, "position.lat: expected a number, got a boolean"),
        ({"position": {"lon": 0}}, "position.lat: this field is required"),
        (
            {"position": {"lat": 0, "lon": 0, "heading_deg": 360.5}},
            "position.heading_deg: 360.5 is out of range [0, 360]",
        ),
        ({"position": {"lat": 0, "lon": 0, "speed_kph": -1}}, "position.speed_kph: -1 is out of range [0, 200]"),
        ({"position": {"lat": 0, "lon": 0, "alt": 1}}, "position.alt: unknown field"),
        ({"ts": "2026-11-26T12:05:01Z"}, "ts: more than 300 s in the future"),
        ({"ts": "2026-11-25T11:59:59Z"}, "ts: older than 86400 s"),
        ({"ts": "2026-11-26T11:59:59"}, "ts: must carry a UTC offset (e.g. 'Z')"),
        ({"ts": "yesterday"}, "ts: 'yesterday' is not an ISO 8601 timestamp"),
        ({"ts": 1764158399}, "ts: expected an ISO 8601 string, got a number"),
        ({"event_id": "nope"}, "event_id: 'nope' is not a UUID"),
        ({"event_id": None}, "event_id: this field is required"),
        ({"mission_id": "7"}, "mission_id: expected an integer, got a string"),
        ({"mission_id": 0}, "mission_id: out of range"),
        ({"vehicle_id": ""}, "vehicle_id: expected 1 to 100 characters"),
        (
            {"safety_event": "fire"},
            "safety_event: unknown value 'fire'; expected one of collision_avoidance, "
            "emergency_stop, human_intervention_required",
        ),
        (
            {"autonomy_mode": "warp"},
            "autonomy_mode: unknown value 'warp'; expected one of autonomous, supervised, manual, safe_hold",
        ),
        (
            {"connectivity": {"uplink": "3g"}},
            "connectivity.uplink: unknown value '3g'; expected one of 5g, 4g, satellite",
        ),
        ({"connectivity": {"packet_loss_pct": 101}}, "connectivity.packet_loss_pct: 101 is out of range [0, 100]"),
        ({"health": {"fuel_pct": float("nan")}}, "health.fuel_pct: must be a finite number"),
        (
            {"health": {"critical_sensors_ok": "yes"}},
            "health.critical_sensors_ok: expected true or false, got a string",
        ),
        ({"health": {"ecu_errors": "P0301"}}, "health.ecu_errors: expected a list of strings, got a string"),
        ({"health": {"ecu_errors": ["ok", 3]}}, "health.ecu_errors[1]: expected a code of 1 to 32 characters"),
        (
            {"mission_state": "flying"},
            "mission_state: unknown value 'flying'; expected one of assigned, en_route, "
            "arriving, unloading, suspended, completed, failed, cancelled, handed_over",
        ),
        ({"schema_version": "2"}, "schema_version: unsupported '2'; this endpoint speaks '1'"),
        ({"extra": 1}, "extra: unknown field"),
    ],
)
def test_bad_values_are_rejected_with_a_precise_reason(overrides: dict[str, Any], reason: str) -> None:
    assert validate(good(**overrides)) == reason


def test_a_non_object_is_rejected() -> None:
    assert validate([1, 2]) == "event: expected an object, got a list"
    assert validate(None) == "event: expected an object, got null"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_crashes_the_validator(raw: Any) -> None:
    assert isinstance(validate(raw), (TelemetryEvent, str))


@settings(max_examples=300, deadline=None)
@given(
    field=st.sampled_from(
        [
            "event_id",
            "mission_id",
            "vehicle_id",
            "correlation_id",
            "ts",
            "position",
            "health",
            "connectivity",
            "safety_event",
            "autonomy_mode",
            "mission_state",
        ]
    ),
    value=json_values,
)
def test_any_field_replaced_by_junk_is_accepted_only_when_valid(field: str, value: Any) -> None:
    outcome = validate(good(**{field: value}))
    if isinstance(outcome, str):
        assert outcome.split(":")[0].split(".")[0].split("[")[0] in (field, "event")
    else:
        # Whatever got through is in range and typed.
        assert -90 <= outcome.lat <= 90 and -180 <= outcome.lon <= 180
        assert NOW - timedelta(hours=24) <= outcome.ts <= NOW + timedelta(minutes=5)


@settings(max_examples=200, deadline=None)
@given(lat=st.floats(allow_nan=True, allow_infinity=True), lon=st.floats(allow_nan=True, allow_infinity=True))
def test_coordinates_accepted_iff_in_range(lat: float, lon: float) -> None:
    outcome = validate(good(position={"lat": lat, "lon": lon}))
    in_range = -90 <= lat <= 90 and -180 <= lon <= 180
    assert isinstance(outcome, TelemetryEvent) == in_range


@settings(max_examples=300, deadline=None)
@given(data=st.data(), raw=st.booleans())
def test_an_event_holding_an_unstorable_string_anywhere_is_refused(data: st.DataObject, raw: bool) -> None:
    # Anywhere: a value, a member name, a new member at any depth; as an escape or as raw bytes.
    case = data.draw(injected(good()))
    outcome = validate(json_parse(encode(case.body, raw)))
    assert isinstance(outcome, str), case
    # The reason goes back to the sender and into logs: it must itself be storable.
    assert unstorable_char(outcome) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"vehicle_id": "TRK\x00"}, "vehicle_id: holds U+0000 (NUL), which cannot be stored"),
        (
            {"health": {"ecu_errors": ["P0\ud800"]}},
            "health.ecu_errors[0]: holds U+D800 (a lone surrogate), which cannot be stored",
        ),
        ({"ts": "2026-11-26T11:59:59\x00Z"}, "ts: holds U+0000 (NUL), which cannot be stored"),
        ({"x\x00": 1}, '"x\\u0000": unknown field'),
    ],
)
def test_unstorable_strings_are_named_in_the_reason(overrides: dict[str, Any], reason: str) -> None:
    assert validate(good(**overrides)) == reason
