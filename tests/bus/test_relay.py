"""The outbox relay against a real nats-server: every event once, in order, as a valid CloudEvent; faults."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction

from missions.bus.publisher import NatsPublisher, PublishError
from missions.bus.relay import EVENTS, TELEMETRY, Gaps, Relay, cursor_get, lag, stream_specs
from missions.bus.types import EVENT_ACTIONS, EVENT_DATA_SCHEMAS, TELEMETRY_TYPE, cloudevent_type
from missions.events import Actor, event_record
from missions.models import AuditEvent, Mission, TelemetrySample
from missions.models.bus import BusRefusal
from tests.bus.conftest import NatsServer, stream_events
from tests.factories import MissionFactory
from tms_console import tracing

pytestmark = pytest.mark.django_db
SCHEMAS = Path(settings.BASE_DIR) / "docs" / "events"
ACTOR = Actor.system("bus-test")


def schema_for(cloudevents_type: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / f"{cloudevents_type}.schema.json").read_text()))


def drain(relay: Relay, *, seconds: float = 30.0) -> None:
    """Relay rounds until both cursors are at the end of their tables.

    Ids below the first row may be a gap the cursor waits out (PostgreSQL's sequences go on
    across tests), hence a bounded wait rather than a number of rounds.
    """
    relay.publisher.ensure_streams(stream_specs())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        relay.events_round()
        relay.telemetry_round()
        newest = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        samples = TelemetrySample.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        if cursor_get(EVENTS).position >= newest and cursor_get(TELEMETRY).position >= samples:
            return
        time.sleep(0.05)
    raise AssertionError(f"the relay did not catch up: {lag()}")


def record_every_type(missions: list[Mission]) -> list[AuditEvent]:
    """One event of each registered type, spread over the missions, plus one security event (never on the bus)."""
    recorded = []
    with transaction.atomic():
        for n, action in enumerate(sorted(EVENT_ACTIONS)):
            mission = missions[n % len(missions)]
            recorded.append(
                event_record(
                    actor=ACTOR,
                    action=action,
                    subject_type=action.split(".")[0],
                    subject_id=mission.pk,
                    # An action whose data has a schema gets the schema's example; the others any object.
                    data=EVENT_DATA_SCHEMAS.get(action, {}).get("examples", [{"n": n}])[0],
                    mission=mission,
                    carrier=mission.carrier,
                )
            )
        event_record(
            actor=ACTOR,
            action="security.client_secret_failed",
            subject_type="partner_client",
            subject_id=1,
            data={"client_address": "203.0.113.9", "identity": "someone"},
        )
    return recorded


def test_every_event_type_arrives_once_in_order_as_a_valid_cloudevent(
    nats_server: NatsServer, bus: NatsPublisher
) -> None:
    missions = [MissionFactory(), MissionFactory()]
    with tracing.span_from("a traced change"):
        pass  # tracing is off in tests: the traceparent extension is checked where a span records
    recorded = record_every_type(missions)
    drain(Relay(bus))

    messages = stream_events(nats_server)
    on_bus = [e for e in AuditEvent.objects.order_by("pk") if not e.action.startswith("security.")]
    assert [int(m.event["id"]) for m in messages] == [e.pk for e in on_bus], "each event once, in id order"
    assert {e.pk for e in recorded} <= {int(m.event["id"]) for m in messages}
    assert not any("security" in m.event["type"] for m in messages)
    for message in messages:
        event = message.event
        jsonschema.validate(event, schema_for(event["type"]), format_checker=jsonschema.FormatChecker())
        assert event["source"] == "https://tms.example/events"
        stored = AuditEvent.objects.get(pk=int(event["id"]))
        assert event["type"] == cloudevent_type(stored.action)
        assert event["subject"] == f"{stored.subject_type}/{stored.subject_id}"
        assert event["data"]["action"] == stored.action and event["data"]["data"] == stored.data
        verb = stored.action.partition(".")[2]
        assert message.subject == f"tms.events.{stored.carrier.slug}.{stored.subject_type}.{verb}"
    # Per mission, the stream order is the order the events were recorded in.
    for mission in missions:
        ids = [int(m.event["id"]) for m in messages if m.event["data"]["mission_id"] == mission.pk]
        assert ids == sorted(ids) and len(ids) > 1
    # Running again publishes nothing new.
    drain(Relay(bus))
    assert len(stream_events(nats_server)) == len(messages)


def test_the_schemas_in_docs_match_the_registry() -> None:
    call_command("events_schemas", "--check")
    assert (SCHEMAS / f"{TELEMETRY_TYPE}.schema.json").exists()


def test_every_action_the_code_records_is_a_registered_event_type() -> None:
    import re

    found: set[str] = set()
    for app in ("missions", "runbooks", "sla", "tms_console"):
        for path in (Path(settings.BASE_DIR) / app).rglob("*.py"):
            found |= set(re.findall(r'action="([a-z_]+\.[a-z_.]+)"', path.read_text()))
    missing = sorted(a for a in found if a not in EVENT_ACTIONS and not a.startswith("security."))
    assert not missing, f"recorded but not registered (missions/bus/types.py): {missing}"


def test_telemetry_goes_as_one_message_per_carrier_batch(nats_server: NatsServer, bus: NatsPublisher) -> None:
    first, second = MissionFactory(), MissionFactory()
    now = datetime.now(tz=UTC)
    for mission in (first, second):
        TelemetrySample.objects.bulk_create(
            TelemetrySample(
                mission=mission,
                vehicle=mission.vehicle,
                recorded_at=now - timedelta(seconds=10 - s),
                lat=31.0 + s / 100,
                lon=-96.0,
                speed_kph=80.0,
                bucket_s=int(now.timestamp()) - 10 + s,
            )
            for s in range(10)
        )
    drain(Relay(bus))
    messages = stream_events(nats_server, stream=settings.BUS_TELEMETRY_STREAM)
    assert len(messages) == 2  # one per carrier, not one per sample
    for message in messages:
        jsonschema.validate(message.event, schema_for(TELEMETRY_TYPE), format_checker=jsonschema.FormatChecker())
        assert len(message.event["data"]["samples"]) == 10
    carriers = {m.event["data"]["carrier"] for m in messages}
    assert carriers == {first.carrier.slug, second.carrier.slug}


def test_a_message_too_large_is_split_or_refused_and_recorded_never_dropped_silently(
    nats_server: NatsServer, bus: NatsPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    mission = MissionFactory()
    now = datetime.now(tz=UTC)
    TelemetrySample.objects.bulk_create(
        TelemetrySample(mission=mission, vehicle=mission.vehicle, recorded_at=now - timedelta(seconds=s), lat=31.0,
                        lon=-96.0, bucket_s=int(now.timestamp()) - s)
        for s in range(40)
    )  # fmt: skip
    with transaction.atomic():
        small = event_record(actor=ACTOR, action="mission.status_changed", subject_type="mission", subject_id=1)
        huge = event_record(
            actor=ACTOR, action="incident.note", subject_type="incident", subject_id=1, data={"note": "x" * 6000}
        )
    monkeypatch.setattr(bus, "max_payload", lambda: 4000)
    drain(Relay(bus))

    telemetry = stream_events(nats_server, stream=settings.BUS_TELEMETRY_STREAM)
    assert len(telemetry) > 1, "the batch was split to fit"
    assert sum(len(m.event["data"]["samples"]) for m in telemetry) == 40
    events = [int(m.event["id"]) for m in stream_events(nats_server)]
    assert small.pk in events and huge.pk not in events
    refusal = BusRefusal.objects.get()
    assert refusal.message_id == str(huge.pk) and refusal.size_bytes > 4000 and "bus takes 4000" in refusal.reason
    assert cursor_get(EVENTS).position == huge.pk  # recorded, and the relay went on


def test_nats_down_keeps_everything_and_the_relay_catches_up_in_order(
    nats_server: NatsServer, bus: NatsPublisher
) -> None:
    mission = MissionFactory()
    relay = Relay(bus)
    drain(relay)
    nats_server.stop()
    with transaction.atomic():
        written = [
            event_record(actor=ACTOR, action="mission.status_changed", subject_type="mission", subject_id=mission.pk,
                         mission=mission, data={"n": n})
            for n in range(20)
        ]  # fmt: skip
    before = cursor_get(EVENTS).position
    with pytest.raises(PublishError):
        relay.events_round()
    assert cursor_get(EVENTS).position == before, "the cursor moves only after acks"
    nats_server.start()  # same port, same store
    drain(relay)
    ids = [int(m.event["id"]) for m in stream_events(nats_server)]
    assert ids[-20:] == [e.pk for e in written]
    assert len(ids) == len(set(ids))


def test_a_gap_is_waited_for_then_passed() -> None:
    now = [100.0]
    gaps = Gaps(grace_seconds=5.0, clock=lambda: now[0])
    assert gaps.advance(10, {11, 12, 14, 15}) == 12  # 13 may still commit
    now[0] += 4.9
    assert gaps.advance(12, {14, 15}) == 12
    assert gaps.advance(12, {13, 14, 15}) == 15  # it committed: everything up to 15 is out
    assert gaps.advance(15, {17}) == 15  # 16 first seen just now
    now[0] += 4.0
    assert gaps.advance(15, {17}) == 15
    now[0] += 1.0
    assert gaps.advance(15, {17}) == 17  # missing for the whole grace: rolled back, for all we can tell
    assert gaps.first_seen == {}


@pytest.mark.parametrize("case", ["system actor, no correlation", "console user, correlation, no before/after"])
def test_envelopes_are_what_the_sdk_writes(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay's envelope, built from plain row values with the JSON columns spliced in unparsed, is the
    document the CloudEvents SDK writes for the event, with the partner API's replay payload as its data."""
    from cloudevents.core.formats.json import JSONFormat
    from cloudevents.core.v1.event import CloudEvent

    from missions.bus.envelopes import event_row_envelope, event_rows
    from missions.events import replay_payload

    user_case = case.startswith("console user")
    traceparent = f"00-{'ab' * 16}-{'cd' * 8}-01"
    monkeypatch.setattr(tracing, "current_traceparent", lambda: traceparent)  # as if recorded in a trace
    user = get_user_model().objects.create_user(username="dispatcher-7", password="x-unused-9c1f")
    actor = Actor.for_user(user) if user_case else ACTOR
    with transaction.atomic():
        event = event_record(
            actor=actor,
            action="mission.status_changed",
            subject_type="mission",
            subject_id=7,
            before=None if user_case else {"status": "assigned"},
            after=None if user_case else {"status": "en_route", "nested": [1, {"x": None}]},
            data={"note": 'ünïcode ✓ "quoted"', "n": 1.5},
            correlation_id=uuid.uuid4() if user_case else None,
        )
    event.refresh_from_db()
    assert event.traceparent == traceparent
    ours = json.loads(event_row_envelope(event_rows(AuditEvent.objects.filter(pk=event.pk))[0]))
    attributes = {
        "id": str(event.pk),
        "source": "https://tms.example/events",
        "type": "com.tms.mission.status_changed.v1",
        "subject": f"mission/{event.subject_id}",
        "time": event.occurred_at,
        "datacontenttype": "application/json",
        "traceparent": traceparent,
    }
    if event.correlation_id:
        attributes["correlationid"] = str(event.correlation_id)
    sdk = json.loads(JSONFormat().write(CloudEvent(attributes, replay_payload(event))))
    ours.pop("source")
    sdk.pop("source")
    assert ours == sdk
    assert ours["data"]["actor"] == ("console" if user_case else "bus-test")
