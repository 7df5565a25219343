"""Fixtures for the telemetry tests: an en-route mission with its vehicle and an event builder."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from missions.choices import MissionStatus
from missions.models import Carrier, Mission
from tests.factories import MissionFactory

EventBuilder = Callable[..., dict[str, Any]]


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_event(mission: Mission, *, ts: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    assert mission.vehicle is not None
    event: dict[str, Any] = {
        "schema_version": "1",
        "event_id": str(uuid.uuid4()),
        "mission_id": mission.pk,
        "vehicle_id": mission.vehicle.external_id,
        "correlation_id": str(mission.correlation_id),
        "ts": iso(ts or datetime.now(UTC)),
        "position": {"lat": 32.5, "lon": -96.5, "speed_kph": 88.0, "heading_deg": 170.0, "accuracy_m": 3.0},
        "mission_state": "en_route",
        "health": {"fuel_pct": 70.0, "critical_sensors_ok": True, "ecu_errors": [], "thermal_warning": False},
        "connectivity": {"uplink": "5g", "packet_loss_pct": 0.2, "latency_ms": 40},
        "safety_event": None,
        "autonomy_mode": "autonomous",
    }
    event.update(overrides)
    return event


@pytest.fixture
def mission(carrier_a: Carrier) -> Mission:
    return MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)


@pytest.fixture
def event_for() -> Callable[..., dict[str, Any]]:
    return make_event


def seconds_ago(n: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=n)
