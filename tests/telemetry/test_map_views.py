"""The live map page and a mission's telemetry series: permissions, offline assets, JSON shape."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client

from missions.models import Carrier, Mission
from missions.telemetry.ingest import ingest_events
from tests.conftest import verified_client
from tests.telemetry.conftest import make_event, seconds_ago

pytestmark = pytest.mark.django_db


def test_map_page_loads_only_local_assets(dispatcher: User) -> None:
    response = verified_client(dispatcher).get("/map/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/vendor/plotly/plotly.min.js" in html
    assert 'data-topojson-url="/static/vendor/topojson/"' in html
    assert "/static/js/livemap.js" in html
    assert "https://" not in html.replace("https://www.w3.org", "")


def test_map_page_needs_a_verified_console_user(outsider: User, client: Client) -> None:
    assert client.get("/map/").status_code == 302
    assert verified_client(outsider).get("/map/").status_code == 403


def test_mission_telemetry_json_has_track_and_chart_series(
    dispatcher: User, carrier_a: Carrier, mission: Mission
) -> None:
    start = seconds_ago(10).replace(microsecond=0)
    ingest_events(
        carrier=carrier_a,
        events=[
            make_event(
                mission,
                ts=start + timedelta(seconds=i),
                position={"lat": 32 + i / 100, "lon": -96.0, "speed_kph": 50.0 + i},
            )
            for i in range(3)
        ],
        source="test",
    )
    data = verified_client(dispatcher).get(f"/missions/{mission.pk}/telemetry.json").json()
    assert data["points"] == 3
    assert data["lat"] == [32.0, 32.01, 32.02]
    assert data["speed_kph"] == [50.0, 51.0, 52.0]
    assert data["uplink"] == ["5g"] * 3 and data["latency_ms"] == [40.0] * 3
    later = (
        verified_client(dispatcher)
        .get(f"/missions/{mission.pk}/telemetry.json", {"since": data["ts"][1].replace("Z", "+00:00")})
        .json()
    )
    assert later["points"] == 1
    assert verified_client(dispatcher).get(f"/missions/{mission.pk}/telemetry.json", {"since": "x"}).status_code == 400
