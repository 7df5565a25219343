"""The normalized telemetry event (schema version "1") and its hand-written validator.

This is the hot path of every ingest (HTTP, WebSocket, MQTT), so it is plain
Python: no serializer framework, and a precise reason string (``field: what is
wrong``) for the first problem found. An event in the usual spelling passes a
fast path of C-level checks (``_validate_fast``); any other goes field by field
through ``_validate``, which words the reasons. The field names match the
OpenAPI serializer in ``missions.partner.api.telemetry_schema``.

Wire shape::

    {
      "schema_version": "1",                      # optional; "1" if absent
      "event_id": "<uuid>",
      "mission_id": 42,
      "vehicle_id": "TRK-0007",                   # the carrier's external id
      "correlation_id": "<uuid>",                 # optional; the mission's if absent
      "ts": "2026-11-26T05:12:00.250Z",           # ISO 8601 with an offset
      "position": {"lat": 32.1, "lon": -96.2, "speed_kph": 88.5, "heading_deg": 172.0, "accuracy_m": 3.0},
      "mission_state": "en_route",                # optional
      "health": {"fuel_pct": 71.0, "battery_pct": null, "critical_sensors_ok": true,
                 "ecu_errors": ["P0301"], "thermal_warning": false},
      "connectivity": {"uplink": "5g", "packet_loss_pct": 0.4, "latency_ms": 48},
      "safety_event": null,                       # collision_avoidance | emergency_stop | human_intervention_required
      "autonomy_mode": "autonomous",              # optional
      "software_version": "av-stack/4.2.1"        # optional: a target path of the carrier's TUF metadata
    }
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from django.conf import settings

from missions.choices import AutonomyMode, MissionStatus
from tms_console.unstorable import spelled, unstorable_char

SCHEMA_VERSION = "1"
UPLINKS = ("5g", "4g", "satellite")
SAFETY_EVENTS = ("collision_avoidance", "emergency_stop", "human_intervention_required")
AUTONOMY_MODES: tuple[str, ...] = tuple(AutonomyMode.values)
MISSION_STATES: tuple[str, ...] = tuple(MissionStatus.values)

TOP_LEVEL_FIELDS = frozenset(
    {
        "schema_version",
        "event_id",
        "mission_id",
        "vehicle_id",
        "correlation_id",
        "ts",
        "position",
        "mission_state",
        "health",
        "connectivity",
        "safety_event",
        "autonomy_mode",
        "software_version",
    }
)
POSITION_FIELDS = frozenset({"lat", "lon", "speed_kph", "heading_deg", "accuracy_m"})
HEALTH_FIELDS = frozenset({"fuel_pct", "battery_pct", "critical_sensors_ok", "ecu_errors", "thermal_warning"})
CONNECTIVITY_FIELDS = frozenset({"uplink", "packet_loss_pct", "latency_ms"})

VEHICLE_ID_MAX = 100
# A TUF target path (the OTA check looks it up in the carrier's signed targets metadata).
SOFTWARE_VERSION_MAX = 200
ECU_ERRORS_MAX = 32
ECU_ERROR_CODE_MAX = 32
# Physical bounds: a loaded tractor-trailer does not exceed these; anything above is a bad sensor.
SPEED_KPH_MAX = 200.0
ACCURACY_M_MAX = 100_000.0
LATENCY_MS_MAX = 600_000.0


class Invalid(Exception):
    """A validation failure; ``str(exc)`` is the reason sent back to the sender."""


@dataclass(slots=True)
class TelemetryEvent:
    """A validated event: typed fields, UTC timestamp, optional sections normalised to dicts."""

    event_id: uuid.UUID
    mission_id: int
    vehicle_id: str
    correlation_id: uuid.UUID | None
    ts: datetime
    lat: float
    lon: float
    speed_kph: float | None = None
    heading_deg: float | None = None
    accuracy_m: float | None = None
    mission_state: str | None = None
    health: dict[str, Any] = field(default_factory=dict)
    connectivity: dict[str, Any] = field(default_factory=dict)
    safety_event: str | None = None
    autonomy_mode: str | None = None
    # Not kept in the window: the pipeline records a change of a vehicle's version in the event log.
    software_version: str | None = None
    # ``ts`` in the one wire spelling (``ts_format``), computed once: the window, the samples'
    # COPY rows and the live map all need the text.
    ts_text: str = ""
    # "sha256:<hex>" of the vehicle's X.509-SVID when the message carried one (missions.identity);
    # set by ingest from what the transport verified, never read from the event itself.
    vehicle_cert: str = ""

    def __post_init__(self) -> None:
        if not self.ts_text:
            self.ts_text = ts_format(self.ts)

    def position(self) -> dict[str, float | None]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "speed_kph": self.speed_kph,
            "heading_deg": self.heading_deg,
            "accuracy_m": self.accuracy_m,
        }

    def to_wire(self) -> dict[str, Any]:
        """The normalized event as JSON-ready data (what the window and snapshots store)."""
        wire = {
            "schema_version": SCHEMA_VERSION,
            "event_id": str(self.event_id),
            "mission_id": self.mission_id,
            "vehicle_id": self.vehicle_id,
            "correlation_id": str(self.correlation_id) if self.correlation_id else None,
            "ts": self.ts_text,
            "position": self.position(),
            "mission_state": self.mission_state,
            "health": self.health,
            "connectivity": self.connectivity,
            "safety_event": self.safety_event,
            "autonomy_mode": self.autonomy_mode,
        }
        if self.vehicle_cert:
            wire["vehicle_cert"] = self.vehicle_cert
        return wire


def ts_format(ts: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` and milliseconds: one spelling for every instant."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return ts.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


# --- Field checks ---------------------------------------------------------------


def _number(value: Any, name: str, lo: float, hi: float, *, hi_open: bool = False) -> float:
    # bool is an int subclass; "true" as a speed is a type error, not 1 km/h.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{name}: expected a number, got {_type_name(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float: beyond every bound too
        bound = f"[{_fmt(lo)}, {_fmt(hi)})" if hi_open else f"[{_fmt(lo)}, {_fmt(hi)}]"
        raise Invalid(f"{name}: an integer too large for any number is out of range {bound}") from None
    if not math.isfinite(number):
        raise Invalid(f"{name}: must be a finite number")
    if number < lo or number > hi or (hi_open and number >= hi):
        bound = f"[{_fmt(lo)}, {_fmt(hi)})" if hi_open else f"[{_fmt(lo)}, {_fmt(hi)}]"
        raise Invalid(f"{name}: {_fmt(number)} is out of range {bound}")
    return number


def _optional_number(
    section: dict[str, Any], key: str, name: str, lo: float, hi: float, *, hi_open: bool = False
) -> float | None:
    value = section.get(key)
    if value is None:
        return None
    return _number(value, name, lo, hi, hi_open=hi_open)


def _optional_bool(section: dict[str, Any], key: str, name: str) -> bool | None:
    value = section.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise Invalid(f"{name}: expected true or false, got {_type_name(value)}")


def _enum(value: Any, name: str, allowed: tuple[str, ...], *, nullable: bool = True) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name}: expected a string, got {_type_name(value)}")
    if value not in allowed:
        raise Invalid(f"{name}: unknown value {_quote(value)}; expected one of {', '.join(allowed)}")
    return value


def _object(value: Any, name: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{name}: expected an object, got {_type_name(value)}")
    # issuperset runs in C without building a set; the list is only built on the error path.
    if not allowed.issuperset(value):
        unknown = [k for k in value if k not in allowed]
        raise Invalid(f"{name}.{_key(unknown[0])}: unknown field")
    return value


def _storable(value: str, name: str) -> None:
    # The free-text strings an event keeps (every other string is parsed or matched against a
    # fixed set, and refused with an escaped echo when it does not match). Refused here, per
    # event, so storage never meets one and the rest of the batch is stored.
    char = unstorable_char(value)
    if char is not None:
        raise Invalid(f"{name}: holds {char}, which cannot be stored")


def _uuid(value: Any, name: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise Invalid(f"{name}: expected a UUID string, got {_type_name(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Invalid(f"{name}: {_quote(value)} is not a UUID") from None


def _timestamp(value: Any, now: datetime, max_future: timedelta, max_age: timedelta) -> tuple[datetime, str]:
    """The instant in UTC and its canonical text (the sender's own text when it is already canonical)."""
    if not isinstance(value, str):
        raise Invalid(f"ts: expected an ISO 8601 string, got {_type_name(value)}")
    if len(value) > 40:
        raise Invalid("ts: too long for an ISO 8601 timestamp")
    # datetime.fromisoformat accepts some strings holding U+0000, and a canonical-looking
    # one would be stored as sent.
    _storable(value, "ts")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        try:  # RFC 3339 admits a lower-case "z" offset, which Python does not read
            ts = datetime.fromisoformat(value.upper())
        except ValueError:
            raise Invalid(f"ts: {_quote(value)} is not an ISO 8601 timestamp") from None
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise Invalid("ts: must carry a UTC offset (e.g. 'Z')")
    try:
        ts = ts.astimezone(UTC)
    except (OverflowError, ValueError):
        raise Invalid(f"ts: {_quote(value)} is out of range") from None
    if ts > now + max_future:
        raise Invalid(f"ts: more than {int(max_future.total_seconds())} s in the future")
    if ts < now - max_age:
        raise Invalid(f"ts: older than {int(max_age.total_seconds())} s")
    # "2026-11-26T05:12:00.250Z" is already the canonical spelling; anything else is re-spelt.
    if len(value) == 24 and value[23] == "Z" and value[19] == "." and value[10] == "T":
        return ts, value
    return ts, ts_format(ts)


def _health(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    section = _object(value, "health", HEALTH_FIELDS)
    out: dict[str, Any] = {}
    for key in ("fuel_pct", "battery_pct"):
        number = _optional_number(section, key, f"health.{key}", 0.0, 100.0)
        if number is not None:
            out[key] = number
    for key in ("critical_sensors_ok", "thermal_warning"):
        flag = _optional_bool(section, key, f"health.{key}")
        if flag is not None:
            out[key] = flag
    errors = section.get("ecu_errors")
    if errors is not None:
        if not isinstance(errors, list):
            raise Invalid(f"health.ecu_errors: expected a list of strings, got {_type_name(errors)}")
        if len(errors) > ECU_ERRORS_MAX:
            raise Invalid(f"health.ecu_errors: at most {ECU_ERRORS_MAX} codes")
        for i, code in enumerate(errors):
            if not isinstance(code, str) or not code or len(code) > ECU_ERROR_CODE_MAX:
                raise Invalid(f"health.ecu_errors[{i}]: expected a code of 1 to {ECU_ERROR_CODE_MAX} characters")
            _storable(code, f"health.ecu_errors[{i}]")
        out["ecu_errors"] = list(errors)
    return out


def _connectivity(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    section = _object(value, "connectivity", CONNECTIVITY_FIELDS)
    out: dict[str, Any] = {}
    uplink = _enum(section.get("uplink"), "connectivity.uplink", UPLINKS)
    if uplink is not None:
        out["uplink"] = uplink
    loss = _optional_number(section, "packet_loss_pct", "connectivity.packet_loss_pct", 0.0, 100.0)
    if loss is not None:
        out["packet_loss_pct"] = loss
    latency = _optional_number(section, "latency_ms", "connectivity.latency_ms", 0.0, LATENCY_MS_MAX)
    if latency is not None:
        out["latency_ms"] = latency
    return out


def _software_version(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid(f"software_version: expected a string, got {_type_name(value)}")
    if not value or len(value) > SOFTWARE_VERSION_MAX:
        raise Invalid(f"software_version: expected 1 to {SOFTWARE_VERSION_MAX} characters")
    _storable(value, "software_version")
    return value


# --- The validator --------------------------------------------------------------


def event_validate(
    raw: Any,
    *,
    now: datetime | None = None,
    max_future: timedelta | None = None,
    max_age: timedelta | None = None,
) -> TelemetryEvent | str:
    """Return the normalized event, or the reason it is rejected. Never raises on any input."""
    now = now or datetime.now(UTC)
    max_future = max_future or timedelta(seconds=settings.TELEMETRY_MAX_FUTURE_SECONDS)
    max_age = max_age or timedelta(seconds=settings.TELEMETRY_MAX_AGE_SECONDS)
    # The usual event takes the fast path; anything it is not sure of goes through the
    # field-by-field validator, which also words the reason.
    event = _validate_fast(raw, now - max_age, now + max_future)
    if event is not None:
        return event
    try:
        return _validate(raw, now, max_future, max_age)
    except Invalid as exc:
        return str(exc)
    except RecursionError:
        return "event: nested too deeply"


def _validate(raw: Any, now: datetime, max_future: timedelta, max_age: timedelta) -> TelemetryEvent:
    if not isinstance(raw, dict):
        raise Invalid(f"event: expected an object, got {_type_name(raw)}")
    if not TOP_LEVEL_FIELDS.issuperset(raw):
        unknown = [k for k in raw if k not in TOP_LEVEL_FIELDS]
        raise Invalid(f"{_key(unknown[0])}: unknown field")
    version = raw.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise Invalid(f"schema_version: unsupported {_quote(version)}; this endpoint speaks {SCHEMA_VERSION!r}")
    for required in ("event_id", "mission_id", "vehicle_id", "ts", "position"):
        if raw.get(required) is None:
            raise Invalid(f"{required}: this field is required")

    event_id = _uuid(raw["event_id"], "event_id")
    mission_id = raw["mission_id"]
    if isinstance(mission_id, bool) or not isinstance(mission_id, int):
        raise Invalid(f"mission_id: expected an integer, got {_type_name(mission_id)}")
    if not 1 <= mission_id <= 2**63 - 1:
        raise Invalid("mission_id: out of range")
    vehicle_id = raw["vehicle_id"]
    if not isinstance(vehicle_id, str):
        raise Invalid(f"vehicle_id: expected a string, got {_type_name(vehicle_id)}")
    if not vehicle_id or len(vehicle_id) > VEHICLE_ID_MAX:
        raise Invalid(f"vehicle_id: expected 1 to {VEHICLE_ID_MAX} characters")
    _storable(vehicle_id, "vehicle_id")
    correlation = raw.get("correlation_id")
    correlation_id = None if correlation is None else _uuid(correlation, "correlation_id")
    ts, ts_text = _timestamp(raw["ts"], now, max_future, max_age)

    position = _object(raw["position"], "position", POSITION_FIELDS)
    if position.get("lat") is None:
        raise Invalid("position.lat: this field is required")
    if position.get("lon") is None:
        raise Invalid("position.lon: this field is required")
    lat = _number(position["lat"], "position.lat", -90.0, 90.0)
    lon = _number(position["lon"], "position.lon", -180.0, 180.0)
    speed = _optional_number(position, "speed_kph", "position.speed_kph", 0.0, SPEED_KPH_MAX)
    heading = _optional_number(position, "heading_deg", "position.heading_deg", 0.0, 360.0)
    accuracy = _optional_number(position, "accuracy_m", "position.accuracy_m", 0.0, ACCURACY_M_MAX)

    return TelemetryEvent(
        event_id=event_id,
        mission_id=mission_id,
        vehicle_id=vehicle_id,
        correlation_id=correlation_id,
        ts=ts,
        lat=lat,
        lon=lon,
        speed_kph=speed,
        heading_deg=heading,
        accuracy_m=accuracy,
        mission_state=_enum(raw.get("mission_state"), "mission_state", MISSION_STATES),
        health=_health(raw.get("health")),
        connectivity=_connectivity(raw.get("connectivity")),
        safety_event=_enum(raw.get("safety_event"), "safety_event", SAFETY_EVENTS),
        autonomy_mode=_enum(raw.get("autonomy_mode"), "autonomy_mode", AUTONOMY_MODES),
        software_version=_software_version(raw.get("software_version")),
        ts_text=ts_text,
    )


# --- The fast path ----------------------------------------------------------------
#
# Most events are well formed and spelt the usual way: JSON strings, floats and ints,
# ASCII text, the canonical "...T..:..:...fffZ" timestamp. ``_validate_fast`` accepts
# exactly those, with the same result ``_validate`` gives them, in a few C-level checks
# per field; it returns None for anything else (an error, or an unusual spelling) and
# ``_validate`` decides, and words the reason. Every check here is as strict as or
# stricter than its counterpart above (tests/telemetry/test_normalize_fast.py holds the
# two to the same answers).

_MISSION_STATES = frozenset(MISSION_STATES)
_SAFETY_EVENTS = frozenset(SAFETY_EVENTS)
_AUTONOMY_MODES = frozenset(AUTONOMY_MODES)
_UPLINKS = frozenset(UPLINKS)
_MISSION_ID_MAX = 2**63 - 1
_from_iso = datetime.fromisoformat


def _uuid_fast(value: Any) -> uuid.UUID | None:
    """``uuid.UUID(value)`` for the 32 hex digits with hyphens that nearly every sender writes; else None.

    ``uuid.UUID`` drops every hyphen and reads the remaining 32 characters with
    ``int(hex, 16)``; when that succeeds on the text as it stands (no braces, no
    "urn:uuid:" to strip, since ``int`` refuses those characters) the result is the
    same UUID, made from its number.
    """
    if type(value) is not str:
        return None
    digits = value.replace("-", "")
    if len(digits) != 32:
        return None
    try:
        number = int(digits, 16)
    except ValueError:
        return None
    return uuid.UUID(int=number)


def _text_fast(value: Any, longest: int) -> TypeGuard[str]:
    # A string of 1 to ``longest`` characters that is plainly storable (ASCII, no NUL).
    return type(value) is str and 0 < len(value) <= longest and value.isascii() and "\x00" not in value


def _number_fast(value: Any, lo: float, hi: float) -> float | None:
    # A JSON float or int in [lo, hi] (NaN fails the comparison), as ``_number`` returns it; else None.
    kind = type(value)
    if kind is float:
        if lo <= value <= hi:
            return value  # type: ignore[no-any-return]
    elif kind is int and lo <= value <= hi:
        return float(value)
    return None


def _validate_fast(raw: Any, earliest: datetime, latest: datetime) -> TelemetryEvent | None:
    """The event ``_validate`` would return, when ``raw`` is the usual shape; None when not sure."""
    if type(raw) is not dict or not TOP_LEVEL_FIELDS.issuperset(raw):
        return None
    get = raw.get
    if get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        return None
    event_id = _uuid_fast(get("event_id"))
    if event_id is None:
        return None
    mission_id = get("mission_id")
    if type(mission_id) is not int or not 1 <= mission_id <= _MISSION_ID_MAX:
        return None
    vehicle_id = get("vehicle_id")
    if not _text_fast(vehicle_id, VEHICLE_ID_MAX):
        return None
    correlation = get("correlation_id")
    correlation_id = None
    if correlation is not None:
        correlation_id = _uuid_fast(correlation)
        if correlation_id is None:
            return None

    # The canonical spelling, which ``_timestamp`` keeps as the sender wrote it.
    text = get("ts")
    if not (
        type(text) is str
        and len(text) == 24
        and text[23] == "Z"
        and text[19] == "."
        and text[10] == "T"
        and text.isascii()
        and "\x00" not in text
    ):
        return None
    try:
        ts = _from_iso(text)
    except ValueError:
        return None
    if ts.tzinfo is not UTC or ts > latest or ts < earliest:
        return None

    position = get("position")
    if type(position) is not dict or not POSITION_FIELDS.issuperset(position):
        return None
    pget = position.get
    lat = _number_fast(pget("lat"), -90.0, 90.0)
    lon = _number_fast(pget("lon"), -180.0, 180.0)
    if lat is None or lon is None:
        return None
    speed = heading = accuracy = None
    value = pget("speed_kph")
    if value is not None and (speed := _number_fast(value, 0.0, SPEED_KPH_MAX)) is None:
        return None
    value = pget("heading_deg")
    if value is not None and (heading := _number_fast(value, 0.0, 360.0)) is None:
        return None
    value = pget("accuracy_m")
    if value is not None and (accuracy := _number_fast(value, 0.0, ACCURACY_M_MAX)) is None:
        return None

    mission_state = get("mission_state")
    if mission_state is not None and (type(mission_state) is not str or mission_state not in _MISSION_STATES):
        return None
    safety_event = get("safety_event")
    if safety_event is not None and (type(safety_event) is not str or safety_event not in _SAFETY_EVENTS):
        return None
    autonomy_mode = get("autonomy_mode")
    if autonomy_mode is not None and (type(autonomy_mode) is not str or autonomy_mode not in _AUTONOMY_MODES):
        return None
    software_version = get("software_version")
    if software_version is not None and not _text_fast(software_version, SOFTWARE_VERSION_MAX):
        return None
    health = _health_fast(get("health"))
    if health is None:
        return None
    connectivity = _connectivity_fast(get("connectivity"))
    if connectivity is None:
        return None

    return TelemetryEvent(
        event_id,
        mission_id,
        vehicle_id,
        correlation_id,
        ts,
        lat,
        lon,
        speed,
        heading,
        accuracy,
        mission_state,
        health,
        connectivity,
        safety_event,
        autonomy_mode,
        software_version,
        text,
    )


def _health_fast(value: Any) -> dict[str, Any] | None:
    """``_health(value)`` for the usual section (keys in its order), or None when not sure."""
    if value is None:
        return {}
    if type(value) is not dict or not HEALTH_FIELDS.issuperset(value):
        return None
    get = value.get
    out: dict[str, Any] = {}
    for key in ("fuel_pct", "battery_pct"):
        raw = get(key)
        if raw is not None:
            number = _number_fast(raw, 0.0, 100.0)
            if number is None:
                return None
            out[key] = number
    for key in ("critical_sensors_ok", "thermal_warning"):
        flag = get(key)
        if flag is not None:
            if type(flag) is not bool:
                return None
            out[key] = flag
    errors = get("ecu_errors")
    if errors is not None:
        if type(errors) is not list or len(errors) > ECU_ERRORS_MAX:
            return None
        for code in errors:
            if not _text_fast(code, ECU_ERROR_CODE_MAX):
                return None
        out["ecu_errors"] = list(errors)
    return out


def _connectivity_fast(value: Any) -> dict[str, Any] | None:
    """``_connectivity(value)`` for the usual section, or None when not sure."""
    if value is None:
        return {}
    if type(value) is not dict or not CONNECTIVITY_FIELDS.issuperset(value):
        return None
    get = value.get
    out: dict[str, Any] = {}
    uplink = get("uplink")
    if uplink is not None:
        if type(uplink) is not str or uplink not in _UPLINKS:
            return None
        out["uplink"] = uplink
    raw = get("packet_loss_pct")
    if raw is not None:
        if (loss := _number_fast(raw, 0.0, 100.0)) is None:
            return None
        out["packet_loss_pct"] = loss
    raw = get("latency_ms")
    if raw is not None:
        if (latency := _number_fast(raw, 0.0, LATENCY_MS_MAX)) is None:
            return None
        out["latency_ms"] = latency
    return out


# --- Reason formatting: short, and never echoing a huge or binary value --------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key(key: Any) -> str:
    text = str(key)
    if unstorable_char(text) is not None:
        text = spelled(text)  # JSON escapes: a reason must itself be storable and renderable
    return text if len(text) <= 40 else text[:37] + "..."


def _fmt(number: float) -> str:
    return f"{number:g}"
