"""Services: validation, eligibility, the offer flow and the event written by every call."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from missions import services
from missions.choices import (
    AutonomyMode,
    CarrierKind,
    CarrierStatus,
    ExceptionKind,
    MissionStatus,
    ShipmentStatus,
    TenderStatus,
)
from missions.events import Actor
from missions.models import AuditEvent, Mission, Shipment, Tender
from missions.selectors import carrier_ranking
from tests.factories import CarrierFactory, MissionFactory, ShipmentFactory, VehicleFactory
from tms_console.domain import Conflict, DomainError

pytestmark = pytest.mark.django_db


def shipment_fields(**overrides: Any) -> dict[str, Any]:
    now = timezone.now()
    fields: dict[str, Any] = {
        "origin_address": "Dallas, TX",
        "origin_region": "TX",
        "origin_lat": 32.7767,
        "origin_lon": -96.797,
        "destination_address": "Houston, TX",
        "destination_region": "TX",
        "destination_lat": 29.7604,
        "destination_lon": -95.3698,
        "pickup_window_start": now + timedelta(hours=1),
        "pickup_window_end": now + timedelta(hours=2),
        "delivery_window_start": now + timedelta(hours=5),
        "delivery_window_end": now + timedelta(hours=8),
        "weight_kg": 12000,
    }
    fields.update(overrides)
    return fields


def last_event(**filters: Any) -> AuditEvent:
    return AuditEvent.objects.filter(**filters).latest("id")


def test_shipment_create_records_event_with_correlation_id(system_actor: Actor) -> None:
    shipment = services.shipment_create(actor=system_actor, **shipment_fields())
    event = last_event(action="shipment.created")
    assert event.subject_id == shipment.pk
    assert event.correlation_id == shipment.correlation_id
    assert shipment.status == ShipmentStatus.OPEN


def test_a_reference_already_taken_is_drawn_again(system_actor: Actor, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet books tens of thousands of loads a day: a drawn reference can meet one already stored."""
    existing = services.shipment_create(actor=system_actor, **shipment_fields())
    draws = iter([existing.reference, existing.reference, "SHP-260101-0000ABCD"])
    monkeypatch.setattr(services, "_new_reference", lambda: next(draws))
    shipment = services.shipment_create(actor=system_actor, **shipment_fields())
    assert shipment.reference == "SHP-260101-0000ABCD"
    assert Shipment.objects.count() == 2
    assert AuditEvent.objects.filter(action="shipment.created").count() == 2


def test_references_carry_the_day_and_eight_hex_digits(system_actor: Actor) -> None:
    shipment = services.shipment_create(actor=system_actor, **shipment_fields())
    assert re.fullmatch(rf"SHP-{timezone.now():%y%m%d}-[0-9A-F]{{8}}", shipment.reference)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"weight_kg": 0}, "weight_kg"),
        ({"origin_lat": 91.0}, "origin_lat"),
        ({"destination_lon": -181.0}, "destination_lon"),
        ({"origin_region": "Texas"}, "origin_region"),
        ({"pickup_window_end": timezone.now()}, "pickup_window_end"),
    ],
)
def test_shipment_create_rejects_bad_input_and_stores_nothing(
    overrides: dict[str, Any], field: str, system_actor: Actor
) -> None:
    with pytest.raises(ValidationError) as err:
        services.shipment_create(actor=system_actor, **shipment_fields(**overrides))
    assert field in err.value.message_dict
    assert Shipment.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_delivery_window_must_end_after_pickup_starts(system_actor: Actor) -> None:
    now = timezone.now()
    with pytest.raises(ValidationError) as err:
        services.shipment_create(
            actor=system_actor,
            **shipment_fields(
                pickup_window_start=now + timedelta(hours=5),
                pickup_window_end=now + timedelta(hours=6),
                delivery_window_start=now + timedelta(hours=1),
                delivery_window_end=now + timedelta(hours=2),
            ),
        )
    assert "delivery_window_end" in err.value.message_dict


def test_ranking_lists_every_exclusion_reason(system_actor: Actor) -> None:
    shipment = ShipmentFactory(hazmat=True, weight_kg=30000, max_autonomy_level=3, destination_region="LA")
    good = CarrierFactory(name="Good", hazmat_allowed=True, max_autonomy_level=3, operating_regions=[])
    # An autonomous carrier takes hazmat with its permit and its hazmat lanes flag (missions.flags).
    services.carrier_flag_set(
        carrier_id=good.pk, key="hazmat_lanes", enabled=True, actor=system_actor, reason="permit", confirmed=True
    )
    bad = CarrierFactory(
        name="Bad",
        status=CarrierStatus.PAUSED,
        paused_reason="insurance lapsed",
        hazmat_allowed=False,
        max_weight_kg=20000,
        max_autonomy_level=4,
        operating_regions=["TX"],
        fleet_paused=True,
        fleet_paused_reason="vehicle degraded",
    )
    fits = {f.carrier.pk: f for f in carrier_ranking(shipment=shipment)}
    assert fits[good.pk].eligible
    reasons = " | ".join(fits[bad.pk].reasons)
    for expected in (
        "paused: insurance lapsed",
        "hazmat",
        "weight",
        "autonomy level 4",
        "outside operating",
        "fleet paused",
    ):
        assert expected in reasons
    assert carrier_ranking(shipment=shipment)[0].carrier.pk == good.pk


def test_no_tender_to_paused_carrier(system_actor: Actor) -> None:
    shipment = ShipmentFactory()
    carrier = CarrierFactory(status=CarrierStatus.PAUSED, paused_reason="audit")
    with pytest.raises(DomainError, match="paused"):
        services.tender_create(actor=system_actor, shipment_id=shipment.pk, carrier_id=carrier.pk)
    assert not Tender.objects.exists()


def test_no_second_open_tender_to_same_carrier(system_actor: Actor) -> None:
    shipment, carrier = ShipmentFactory(), CarrierFactory()
    services.tender_create(actor=system_actor, shipment_id=shipment.pk, carrier_id=carrier.pk)
    with pytest.raises(Conflict):
        services.tender_create(actor=system_actor, shipment_id=shipment.pk, carrier_id=carrier.pk)
    assert Tender.objects.count() == 1


def _sent_tender(system_actor: Actor, **carrier_kwargs: Any) -> Tender:
    shipment, carrier = ShipmentFactory(), CarrierFactory(**carrier_kwargs)
    tender = services.tender_create(
        actor=system_actor, shipment_id=shipment.pk, carrier_id=carrier.pk, offered_price_usd=Decimal("1200")
    )
    return services.tender_mark_sent(tender_id=tender.pk, actor=system_actor, external_ref="EXT-1")


def test_accept_creates_mission_and_assigns_shipment(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    vehicle = VehicleFactory(carrier=tender.carrier, external_id="LSA-1")
    carrier_actor = Actor.for_carrier(tender.carrier)
    eta = timezone.now() + timedelta(hours=6)
    services.offer_record(
        tender_id=tender.pk, actor=carrier_actor, kind="accept", vehicle_external_id="LSA-1", route_id="I-45", eta=eta
    )
    mission = Mission.objects.get(tender=tender)
    assert (mission.vehicle, mission.route_id, mission.eta, mission.status) == (
        vehicle,
        "I-45",
        eta,
        MissionStatus.ASSIGNED,
    )
    assert mission.correlation_id == tender.correlation_id
    assert mission.price_usd == Decimal("1200")
    tender.refresh_from_db()
    assert tender.status == TenderStatus.ACCEPTED
    assert Shipment.objects.get(pk=tender.shipment_id).status == ShipmentStatus.ASSIGNED
    actions = list(AuditEvent.objects.filter(shipment=tender.shipment).values_list("action", flat=True))
    assert "offer.accept" in actions and "mission.created" in actions


def test_accept_with_unknown_vehicle_changes_nothing(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    with pytest.raises(DomainError, match="not registered"):
        services.offer_record(
            tender_id=tender.pk, actor=Actor.for_carrier(tender.carrier), kind="accept", vehicle_external_id="NOPE"
        )
    tender.refresh_from_db()
    assert tender.status == TenderStatus.SENT
    assert not Mission.objects.exists()


def test_reject_reopens_shipment(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    services.offer_record(tender_id=tender.pk, actor=Actor.for_carrier(tender.carrier), kind="reject", reason="full")
    tender.refresh_from_db()
    assert tender.status == TenderStatus.REJECTED
    assert Shipment.objects.get(pk=tender.shipment_id).status == ShipmentStatus.OPEN


def test_counter_then_dispatcher_accepts(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    services.offer_record(
        tender_id=tender.pk, actor=Actor.for_carrier(tender.carrier), kind="counter", price_usd=Decimal("1500")
    )
    tender.refresh_from_db()
    assert tender.status == TenderStatus.COUNTERED
    services.counter_offer_decide(tender_id=tender.pk, actor=system_actor, accept=True)
    assert Mission.objects.get(tender=tender).price_usd == Decimal("1500")


def test_counter_declined(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    services.offer_record(
        tender_id=tender.pk, actor=Actor.for_carrier(tender.carrier), kind="counter", price_usd=Decimal("1500")
    )
    services.counter_offer_decide(tender_id=tender.pk, actor=system_actor, accept=False)
    tender.refresh_from_db()
    assert tender.status == TenderStatus.REJECTED
    assert not Mission.objects.exists()


def test_counter_without_price_refused(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    with pytest.raises(DomainError, match="positive price"):
        services.offer_record(tender_id=tender.pk, actor=Actor.for_carrier(tender.carrier), kind="counter")


def test_late_answer_after_expiry_changes_nothing_but_leaves_event(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    with time_machine.travel(tender.expires_at + timedelta(seconds=1)), pytest.raises(Conflict, match="expired"):
        services.offer_record(tender_id=tender.pk, actor=Actor.for_carrier(tender.carrier), kind="accept")
    tender.refresh_from_db()
    assert tender.status == TenderStatus.EXPIRED
    assert not Mission.objects.exists()
    assert AuditEvent.objects.filter(action="offer.refused", subject_id=tender.pk).exists()


def test_duplicate_answer_refused(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    actor = Actor.for_carrier(tender.carrier)
    services.offer_record(tender_id=tender.pk, actor=actor, kind="accept")
    with pytest.raises(Conflict):
        services.offer_record(tender_id=tender.pk, actor=actor, kind="accept")
    assert Mission.objects.filter(shipment=tender.shipment).count() == 1


def test_cannot_tender_assigned_shipment(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    services.offer_record(tender_id=tender.pk, actor=Actor.for_carrier(tender.carrier), kind="accept")
    other = CarrierFactory()
    with pytest.raises(Conflict):
        services.tender_create(actor=system_actor, shipment_id=tender.shipment_id, carrier_id=other.pk)


def test_mission_flow_updates_shipment_and_timestamps(system_actor: Actor) -> None:
    mission = MissionFactory()
    for status in (MissionStatus.EN_ROUTE, MissionStatus.ARRIVING, MissionStatus.UNLOADING, MissionStatus.COMPLETED):
        services.mission_transition(mission_id=mission.pk, to_status=status, actor=system_actor)
    mission.refresh_from_db()
    assert mission.started_at is not None and mission.completed_at is not None
    assert Shipment.objects.get(pk=mission.shipment_id).status == ShipmentStatus.DELIVERED


def test_cancel_needs_reason(system_actor: Actor) -> None:
    mission = MissionFactory()
    with pytest.raises(DomainError, match="reason"):
        services.mission_transition(mission_id=mission.pk, to_status=MissionStatus.CANCELLED, actor=system_actor)
    assert Mission.objects.get(pk=mission.pk).status == MissionStatus.ASSIGNED


def test_autonomy_change_marks_intervention_and_vehicle(system_actor: Actor) -> None:
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    services.mission_autonomy_change(mission_id=mission.pk, mode=AutonomyMode.SUPERVISED, actor=system_actor)
    mission.refresh_from_db()
    assert mission.autonomy_mode == AutonomyMode.SUPERVISED and mission.human_intervened
    assert mission.vehicle is not None and mission.vehicle.autonomy_mode == AutonomyMode.SUPERVISED
    event = last_event(action="mission.mode_changed")
    assert event.before == {"autonomy_mode": "autonomous"} and event.after == {"autonomy_mode": "supervised"}


def test_unknown_mode_refused(system_actor: Actor) -> None:
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    with pytest.raises(DomainError):
        services.mission_autonomy_change(mission_id=mission.pk, mode="warp", actor=system_actor)


def test_exception_report_and_resolve(system_actor: Actor) -> None:
    mission = MissionFactory(status=MissionStatus.EN_ROUTE)
    exc = services.mission_exception_report(
        mission_id=mission.pk, kind=ExceptionKind.EMERGENCY_STOP, actor=system_actor, detail="pedestrian"
    )
    assert last_event(action="mission.exception").subject_id == exc.pk
    services.mission_exception_resolve(exception_id=exc.pk, actor=system_actor)
    with pytest.raises(Conflict):
        services.mission_exception_resolve(exception_id=exc.pk, actor=system_actor)


def test_shipment_cancel_cascades(system_actor: Actor) -> None:
    tender = _sent_tender(system_actor)
    services.shipment_cancel(shipment_id=tender.shipment_id, actor=system_actor, reason="customer cancelled")
    tender.refresh_from_db()
    assert tender.status == TenderStatus.CANCELLED
    assert Shipment.objects.get(pk=tender.shipment_id).status == ShipmentStatus.CANCELLED


def test_carrier_pause_resume_and_fleet(system_actor: Actor) -> None:
    carrier = CarrierFactory(kind=CarrierKind.AUTONOMOUS)
    with pytest.raises(DomainError):
        services.carrier_pause(carrier_id=carrier.pk, actor=system_actor, reason=" ")
    services.carrier_pause(carrier_id=carrier.pk, actor=system_actor, reason="maintenance")
    services.carrier_resume(carrier_id=carrier.pk, actor=system_actor)
    services.carrier_fleet_pause(carrier_id=carrier.pk, actor=system_actor, reason="LSA-1 degraded")
    with pytest.raises(DomainError):
        services.carrier_fleet_resume(carrier_id=carrier.pk, actor=system_actor, confirmation="")
    services.carrier_fleet_resume(carrier_id=carrier.pk, actor=system_actor, confirmation="checked sensors")
    actions = list(AuditEvent.objects.filter(carrier=carrier).values_list("action", flat=True))
    assert actions == ["carrier.paused", "carrier.resumed", "carrier.fleet_paused", "carrier.fleet_resumed"]


def test_audit_events_are_append_only(system_actor: Actor) -> None:
    services.shipment_create(actor=system_actor, **shipment_fields())
    event = AuditEvent.objects.get()
    event.action = "tampered"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.update(action="x")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get().action == "shipment.created"
