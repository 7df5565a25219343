"""The console's event bus page and the bus figures on /metrics."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from missions.bus.relay import EVENTS, HEARTBEAT_NAME
from missions.events import Actor, event_record
from missions.models.bus import BusCursor, BusRefusal
from tests.conftest import verified_client
from tms_console.health import heartbeat_record
from tms_console.models import ProcessHeartbeat

pytestmark = pytest.mark.django_db


def _events(n: int) -> list[int]:
    from django.db import transaction

    with transaction.atomic():
        return [
            event_record(
                actor=Actor.system("t"), action="mission.status_changed", subject_type="mission", subject_id=i
            ).pk
            for i in range(n)
        ]


def test_the_page_says_the_bus_is_off_without_nats(readonly: Any, settings: Any) -> None:
    settings.NATS_URL = ""
    response = verified_client(readonly).get(reverse("bus:overview"))
    assert response.status_code == 200
    assert b"The event bus is off" in response.content and b"NATS_URL" in response.content


def test_the_page_shows_the_relay_state_the_lag_and_the_refusals(readonly: Any, settings: Any) -> None:
    settings.NATS_URL = "nats://user:secret@127.0.0.1:4222"
    ids = _events(5)
    BusCursor.objects.create(name=EVENTS, position=ids[1], published=2)
    heartbeat_record(name=HEARTBEAT_NAME, detail={"state": "waiting for the bus", "error": "cannot connect to NATS"})
    BusRefusal.objects.create(stream="TMS_EVENTS", message_id="77", subject="tms.events._.incident.note",
                              size_bytes=2_000_000, reason="2000000 bytes; the bus takes 1048064")  # fmt: skip
    page = verified_client(readonly).get(reverse("bus:overview")).content.decode()
    assert "waiting for the bus" in page and "cannot connect to NATS" in page
    assert "secret" not in page, "credentials in the URL are never shown"
    assert "nats://127.0.0.1:4222" in page
    assert ">3<" in page, "three events wait"  # 5 recorded, the cursor at the second
    assert "2000000 bytes; the bus takes 1048064" in page


def test_a_relay_that_stopped_reporting_is_shown_as_not_running(readonly: Any, settings: Any) -> None:
    settings.NATS_URL = "nats://127.0.0.1:4222"
    heartbeat_record(name=HEARTBEAT_NAME, detail={"state": "publishing"})
    ProcessHeartbeat.objects.filter(name=HEARTBEAT_NAME).update(seen_at=timezone.now() - timezone.timedelta(hours=1))
    page = verified_client(readonly).get(reverse("bus:overview")).content.decode()
    assert "not running (last: publishing)" in page


def test_signed_out_visitors_are_sent_to_sign_in() -> None:
    response = Client().get(reverse("bus:overview"))
    assert response.status_code == 302


def test_metrics_carry_the_relay_and_the_lag_only_when_the_bus_is_on(settings: Any) -> None:
    settings.NATS_URL = ""
    assert b"tms_bus_" not in Client().get("/metrics").content
    settings.NATS_URL = "nats://127.0.0.1:4222"
    ids = _events(4)
    BusCursor.objects.create(name=EVENTS, position=ids[0], published=1)
    heartbeat_record(name=HEARTBEAT_NAME, detail={"state": "publishing"})
    text = Client().get("/metrics").content.decode()
    assert "tms_bus_relay_up 1.0" in text
    assert 'tms_bus_lag_rows{source="events"} 3.0' in text
    assert 'tms_bus_published_total{source="events"} 1.0' in text
    assert "tms_bus_refused_total 0.0" in text
