"""The validator's fast path against the field-by-field validator: same event, same reason, on any input.

``event_validate`` first tries ``_validate_fast`` (the usual shape, few checks)
and falls back to ``_validate``, which words every reason. These tests hold the
fast path to the full validator: whatever it accepts, ``_validate`` accepts with
an identical result (types, key order, -0.0, the timestamp's text), and an event
it passes on gets ``_validate``'s answer unchanged.
"""

from __future__ import annotations

import copy
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from missions.telemetry import normalize
from missions.telemetry.normalize import TelemetryEvent, event_validate

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(hours=24)


def reference(raw: Any) -> Any:
    """What ``event_validate`` answered before it had a fast path (any exception is part of the answer)."""
    try:
        return normalize._validate(raw, NOW, MAX_FUTURE, MAX_AGE)
    except normalize.Invalid as exc:
        return str(exc)
    except RecursionError:
        return "event: nested too deeply"
    except Exception as exc:
        return ("raised", type(exc))


def current(raw: Any) -> Any:
    try:
        return event_validate(raw, now=NOW, max_future=MAX_FUTURE, max_age=MAX_AGE)
    except Exception as exc:
        return ("raised", type(exc))


def fingerprint(outcome: Any) -> Any:
    """Everything about an outcome that storage, the live map or a reply could see."""
    if not isinstance(outcome, TelemetryEvent):
        return outcome
    ids = (outcome.event_id, outcome.correlation_id)
    # repr tells 1 from 1.0 from True, -0.0 from 0.0, and shows each dict's key order.
    return (
        repr(outcome),
        [(type(i), i.is_safe if i is not None else None) for i in ids],
        type(outcome.ts.tzinfo),
        outcome.ts.utcoffset(),
    )


# --- Generated events -------------------------------------------------------------


def uuid_variants(u: uuid.UUID) -> list[str]:
    """The ways a UUID can be spelt that ``uuid.UUID`` reads, or nearly reads."""
    text, digits = str(u), u.hex
    return [
        text,
        text.upper(),
        digits,
        "{" + text + "}",
        "urn:uuid:" + text,
        " " + digits[1:],
        "+" + digits[1:],
        "_" + digits[1:],
        digits[:4] + "_" + digits[5:],
        "0x" + digits[2:],
        "-".join(digits[i : i + 4] for i in range(0, 32, 4)),
        text + "-",
        text[:-1],
        text[:-1] + "g",
        text[:-1] + "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads it
        text[:-1] + "\x00",
        text.replace("-", "--", 1),
    ]


uuid_texts = st.uuids().flatmap(lambda u: st.sampled_from(uuid_variants(u)))

instants = st.datetimes(
    min_value=datetime(2026, 11, 25, 11, 59, 58),
    max_value=datetime(2026, 11, 26, 12, 5, 2),
    timezones=st.just(UTC),
)
in_window = st.datetimes(
    min_value=datetime(2026, 11, 25, 12, 0, 0),
    max_value=datetime(2026, 11, 26, 12, 5, 0),
    timezones=st.just(UTC),
)
offsets = st.sampled_from([timedelta(0), timedelta(hours=-5), timedelta(hours=5, minutes=30), timedelta(hours=14)])


@st.composite
def ts_texts(draw: st.DrawFn) -> str:
    ts = draw(instants)
    style = draw(st.integers(0, 11))
    if style == 0:
        return normalize.ts_format(ts)  # the canonical spelling
    if style == 1:
        return ts.strftime("%Y-%m-%dT%H:%M:%SZ")  # no fraction
    if style == 2:
        return ts.isoformat().replace("+00:00", "Z")  # microseconds, or none
    if style == 3:
        from datetime import timezone

        local = ts.astimezone(timezone(draw(offsets)))
        return local.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "microseconds"])))
    if style == 4:
        return normalize.ts_format(ts).lower()  # "t" and "z"
    if style == 5:
        return normalize.ts_format(ts).replace(".", ",")
    if style == 6:
        return normalize.ts_format(ts)[:-1]  # no offset
    if style == 7:
        return normalize.ts_format(ts)[:-1] + "+00:00"
    if style == 8:
        iso_year, week, day = ts.isocalendar()
        return f"{iso_year}-W{week:02d}-{day}T{ts:%H:%M:%S}.{ts.microsecond // 1000:03d}Z"  # 24 characters
    if style == 9:
        text = normalize.ts_format(ts)
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(st.sampled_from(["\x00", "\u0663", " ", "9", "Z", "\ud800"])) + text[at + 1 :]
    if style == 10:
        return normalize.ts_format(ts).replace(" ", "")[:-1] + "Z"
    return draw(st.sampled_from(["9999-12-31T23:59:59.999-01:00", "0001-01-01T00:00:00.000+01:00", "", "Z"]))


def number_edges(lo: float, hi: float) -> list[Any]:
    """Values at and around the bounds of a numeric field, of every JSON kind a sender could use."""
    return [
        lo, hi, lo - 1e-9, hi + 1e-9, math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf),
        -0.0, 0.0, (lo + hi) / 2, int(lo), int(hi), int(lo) - 1, int(hi) + 1,
        math.nan, math.inf, -math.inf, 10**400, -(10**400), 2**63, 2**1024,
        True, False, "1", "", None, [1], {"v": 1},
    ]  # fmt: skip


def numbers_near(lo: float, hi: float) -> st.SearchStrategy[Any]:
    return (
        st.sampled_from(number_edges(lo, hi))
        | st.floats(min_value=lo, max_value=hi)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.integers(int(lo) - 2, int(hi) + 2)
    )


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)

POSITION_RANGES = {
    "lat": (-90.0, 90.0),
    "lon": (-180.0, 180.0),
    "speed_kph": (0.0, normalize.SPEED_KPH_MAX),
    "heading_deg": (0.0, 360.0),
    "accuracy_m": (0.0, normalize.ACCURACY_M_MAX),
}

ascii_text = st.characters(codec="ascii", exclude_characters="\x00")


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event in the usual spelling, with optional parts present or not."""
    ev: dict[str, Any] = {
        "event_id": str(draw(st.uuids())),
        "mission_id": draw(st.integers(1, 2**63 - 1)),
        "vehicle_id": draw(st.text(ascii_text, min_size=1, max_size=100)),
        "ts": normalize.ts_format(draw(in_window)),
        "position": {
            "lat": draw(st.floats(-90, 90) | st.integers(-90, 90)),
            "lon": draw(st.floats(-180, 180) | st.integers(-180, 180)),
        },
    }
    for key in ("speed_kph", "heading_deg", "accuracy_m"):
        lo, hi = POSITION_RANGES[key]
        if draw(st.booleans()):
            ev["position"][key] = draw(st.floats(lo, hi) | st.integers(int(lo), int(hi)) | st.none())
    optional: dict[str, st.SearchStrategy[Any]] = {
        "schema_version": st.just("1"),
        "correlation_id": st.uuids().map(str) | st.none(),
        "mission_state": st.sampled_from([*normalize.MISSION_STATES, None]),
        "safety_event": st.sampled_from([*normalize.SAFETY_EVENTS, None]),
        "autonomy_mode": st.sampled_from([*normalize.AUTONOMY_MODES, None]),
        "software_version": st.text(ascii_text, min_size=1, max_size=200) | st.none(),
        "health": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "fuel_pct": st.floats(0, 100) | st.integers(0, 100) | st.none(),
                "battery_pct": st.floats(0, 100) | st.integers(0, 100) | st.none(),
                "critical_sensors_ok": st.booleans() | st.none(),
                "thermal_warning": st.booleans() | st.none(),
                "ecu_errors": st.lists(st.text(ascii_text, min_size=1, max_size=32), max_size=4) | st.none(),
            },
        ),
        "connectivity": st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "uplink": st.sampled_from([*normalize.UPLINKS, None]),
                "packet_loss_pct": st.floats(0, 100) | st.integers(0, 100) | st.none(),
                "latency_ms": st.floats(0, normalize.LATENCY_MS_MAX) | st.integers(0, 600_000) | st.none(),
            },
        ),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            ev[key] = draw(strategy)
    # Some keys in another order: the output's order must not depend on it.
    if draw(st.booleans()):
        ev = dict(reversed(list(ev.items())))
    return ev


SECTIONS: list[Any] = [None, {}, [], "x", 1, True, {"extra": 1}, {"": None}]
U = uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
TS_EDGES: list[Any] = [
    "2026-11-26T11:59:59.500Z",
    "2026-11-26T12:05:00.000Z",  # exactly the newest allowed
    "2026-11-26T12:05:00.001Z",
    "2026-11-25T12:00:00.000Z",  # exactly the oldest allowed
    "2026-11-25T11:59:59.999Z",
    "2026-11-26T11:59:59Z",
    "2026-11-26T11:59:59.5Z",
    "2026-11-26T11:59:59.500000Z",
    "2026-11-26t11:59:59.500z",
    "2026-11-26T11:59:59.500z",
    "2026-11-26T11:59:59,500Z",
    "2026-11-26T11:59:59.500",
    "2026-11-26T11:59:59.500+00:00",
    "2026-11-26T06:59:59.500-05:00",
    "2026-11-26T11:59:59.500+0000",
    "2026-W48-4T11:59:59.500Z",  # an ISO week date, 24 characters like the canonical spelling
    "2026-11-26 11:59:59.500Z",
    "20261126T115959.500Z",
    "2026-11-26T11:59:59.\u0665\u0660\u0660Z",
    "2026-11-26T11:59:59.500\x00",
    "2026-11-26T11:59:59\x00500Z",
    "2026-11-26T11:59:59.50\ud800Z",
    "2026-11-26T11:59:60.500Z",
    "9999-12-31T23:59:59.999-01:00",
    "0001-01-01T00:00:00.000+01:00",
    "2026-11-26T11:59:59.500Z" + " " * 20,
    "",
    "Z",
    1764158399,
    None,
    [],
]

# Explicit values for each field: its bounds, its near misses, the other JSON kinds.
EDGES: dict[tuple[str, ...], list[Any]] = {
    ("schema_version",): ["1", "2", 1, 1.0, None, True, "1 ", ""],
    ("event_id",): [*uuid_variants(U), None, 7, True, [], {}, "", "nope"],
    ("correlation_id",): [*uuid_variants(U), None, 7, True, [], {}, "", "nope"],
    ("mission_id",): [0, 1, -1, 2**63 - 1, 2**63, 10**400, 1.0, True, False, "7", None, [7]],
    ("vehicle_id",): ["TRK-1", "", "x" * 100, "x" * 101, "TRK\x00", "TRK-\u00e9", "TRK\ud800", " ", 7, None, True],
    ("ts",): TS_EDGES,
    ("position",): [None, {}, [], "x", {"lat": 0}, {"lon": 0}, {"lat": 0, "lon": 0, "alt": 1}, {"lat": 0, "lon": 0}],
    ("mission_state",): [*normalize.MISSION_STATES, "EN_ROUTE", "", "flying", 1, True, [], None],
    ("safety_event",): [*normalize.SAFETY_EVENTS, "fire", "", 0, False, None, {}],
    ("autonomy_mode",): [*normalize.AUTONOMY_MODES, "Autonomous", "", [], None, 1.5],
    ("software_version",): ["av-stack/4.2.1", "", "v" * 200, "v" * 201, "av\x00", "av-\u00e9", "\ud800", 4.2, None],
    ("health",): SECTIONS,
    ("connectivity",): SECTIONS,
    ("health", "fuel_pct"): number_edges(0.0, 100.0),
    ("health", "battery_pct"): number_edges(0.0, 100.0),
    ("health", "critical_sensors_ok"): [True, False, None, 0, 1, 0.0, "true", []],
    ("health", "thermal_warning"): [True, False, None, 0, 1, 1.0, "false", {}],
    ("health", "ecu_errors"): [
        [],
        ["P0301"],
        ["x" * 32],
        ["x" * 33],
        [""],
        ["P\x00"],
        ["P\u00e9"],
        ["P\ud800"],
        [3],
        [None],
        [["P"]],
        ["P"] * 32,
        ["P"] * 33,
        "P0301",
        None,
        {},
        0,
    ],
    ("connectivity", "uplink"): [*normalize.UPLINKS, "5G", "3g", "", None, 5, True],
    ("connectivity", "packet_loss_pct"): number_edges(0.0, 100.0),
    ("connectivity", "latency_ms"): number_edges(0.0, normalize.LATENCY_MS_MAX),
    **{("position", key): number_edges(lo, hi) for key, (lo, hi) in POSITION_RANGES.items()},
}
RANDOM: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("event_id",): uuid_texts,
    ("correlation_id",): uuid_texts,
    ("vehicle_id",): st.text(max_size=3),
    ("ts",): ts_texts(),
    ("health", "ecu_errors"): st.lists(st.sampled_from(["P0301", "x" * 32, "x" * 33, "", "P\x00", 3]), max_size=34),
    **{
        path: numbers_near(*POSITION_RANGES.get(path[-1], (0.0, 100.0 if path[-1] != "latency_ms" else 600_000.0)))
        for path in EDGES
        if path[-1] in (*POSITION_RANGES, "fuel_pct", "battery_pct", "packet_loss_pct", "latency_ms")
    },
}
# Values each field is tried with: its edges, values of its own kind, anything.
FIELD_VALUES: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    path: st.sampled_from(values) | RANDOM.get(path, st.nothing()) | junk for path, values in EDGES.items()
}
EXTRA_KEYS = st.sampled_from(["extra", "", "lat", "ts ", "x\x00", "\ud800", 1, None])


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    ev = draw(valid_events())
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        action = draw(st.sampled_from(["set", "set", "set", "drop", "extra"]))
        path = draw(st.sampled_from(sorted(FIELD_VALUES, key=str)))
        parent: Any = ev
        for key in path[:-1]:
            if not isinstance(parent.get(key), dict):
                parent[key] = {}
            parent = parent[key]
        if action == "set":
            parent[path[-1]] = draw(FIELD_VALUES[path])
        elif action == "drop":
            parent.pop(path[-1], None)
        else:
            parent[draw(EXTRA_KEYS)] = draw(junk)
    return ev


def same_answer(raw: Any) -> Any:
    expected = reference(copy.deepcopy(raw))
    assert fingerprint(current(raw)) == fingerprint(expected), raw
    return expected


# --- Tests ------------------------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "event_id": str(U),
    "mission_id": 7,
    "vehicle_id": "TRK-1",
    "ts": "2026-11-26T11:59:59.500Z",
    "position": {"lat": 32.7767, "lon": -96.797},
}
FULL: dict[str, Any] = {
    "schema_version": "1",
    **MINIMAL,
    "correlation_id": "0f8fad5b-d9cb-469f-a165-70867728950e",
    "position": {"lat": 32.7767, "lon": -96.797, "speed_kph": 90, "heading_deg": 180.5, "accuracy_m": 2.5},
    "mission_state": "en_route",
    "health": {"fuel_pct": 55.5, "battery_pct": 80, "critical_sensors_ok": True, "ecu_errors": ["P0301"],
               "thermal_warning": False},
    "connectivity": {"uplink": "satellite", "packet_loss_pct": 1.5, "latency_ms": 600},
    "safety_event": "emergency_stop",
    "autonomy_mode": "supervised",
    "software_version": "av-stack/4.2.1",
}  # fmt: skip
DROP = object()


def with_value(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    parent = raw
    for key in path[:-1]:
        if not isinstance(parent.get(key), dict):
            parent[key] = {}
        parent = parent[key]
    if value is DROP:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return raw


@pytest.mark.parametrize("path", sorted(EDGES), ids=".".join)
def test_each_field_at_its_edges_gets_the_same_answer(path: tuple[str, ...]) -> None:
    answers = set()
    for base in (MINIMAL, FULL):
        for value in [*EDGES[path], DROP]:
            answers.add(isinstance(same_answer(with_value(base, path, value)), TelemetryEvent))
    assert answers == {True, False}  # each field's edges hold values on both sides


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events())
def test_valid_events_get_the_same_event_and_take_the_fast_path(raw: dict[str, Any]) -> None:
    assert isinstance(same_answer(raw), TelemetryEvent)
    # Not a test of the fallback alone: the usual spelling is served by the fast path.
    assert normalize._validate_fast(raw, NOW - MAX_AGE, NOW + MAX_FUTURE) is not None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_any_event_gets_the_same_answer_as_the_full_validator(raw: Any) -> None:
    same_answer(raw)
    # And the round trip through JSON text, as events arrive (where the value survives it).
    try:
        text = json.dumps(raw)
    except (TypeError, ValueError, UnicodeEncodeError):
        return
    same_answer(json.loads(text))


@settings(max_examples=500, deadline=None)
@given(junk)
def test_arbitrary_json_gets_the_same_answer(raw: Any) -> None:
    same_answer(raw)


@settings(max_examples=500, deadline=None)
@given(uuid_texts | junk)
def test_the_fast_uuid_is_the_uuid(text: Any) -> None:
    made = normalize._uuid_fast(text)
    if made is None:
        return
    expected = uuid.UUID(text)
    assert type(made) is uuid.UUID
    assert (made.int, made.is_safe, str(made), hash(made)) == (
        expected.int,
        expected.is_safe,
        str(expected),
        hash(expected),
    )


def test_the_fast_path_passes_on_what_it_does_not_know_for_sure() -> None:
    base = {
        "event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "mission_id": 7,
        "vehicle_id": "TRK-1",
        "ts": "2026-11-26T11:59:59.500Z",
        "position": {"lat": 32.7767, "lon": -96.797},
    }
    fast = normalize._validate_fast
    lo, hi = NOW - MAX_AGE, NOW + MAX_FUTURE
    assert fast(base, lo, hi) is not None
    for change in (
        {"ts": "2026-11-26T11:59:59Z"},  # valid, re-spelt by the full validator
        {"ts": "2026-11-26T12:05:00.001Z"},  # too far ahead
        {"vehicle_id": "TRK-\u00e9"},  # valid, but not plain ASCII
        {"event_id": "{1b4e28ba-2fa1-11d2-883f-0016d3cca427}"},  # valid in braces
        {"position": {"lat": float("nan"), "lon": 0.0}},
        {"position": {"lat": 10**400, "lon": 0.0}},
        {"mission_id": True},
    ):
        assert fast({**base, **change}, lo, hi) is None, change
    # And these still get the full validator's answers.
    assert isinstance(current({**base, "ts": "2026-11-26T11:59:59Z"}), TelemetryEvent)
    assert current({**base, "ts": "2026-11-26T11:59:59Z"}).ts_text == "2026-11-26T11:59:59.000Z"
    assert current({**base, "position": {"lat": float("nan"), "lon": 0.0}}) == "position.lat: must be a finite number"
    assert current({**base, "mission_id": True}) == "mission_id: expected an integer, got a boolean"
    # An integer no float can hold is refused with its reason (it used to raise OverflowError from float()).
    assert current({**base, "position": {"lat": 10**400, "lon": 0.0}}) == (
        "position.lat: an integer too large for any number is out of range [-90, 90]"
    )
