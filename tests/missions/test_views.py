"""Console pages: rendering per role, the shipment form, dispatcher actions, pagination, empty states."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from missions import services
from missions.choices import CarrierStatus, CircuitState, MissionStatus, OfferKind, ShipmentStatus, TenderStatus
from missions.events import Actor
from missions.models import AuditEvent, CarrierCircuit, Mission, Shipment, Tender
from runbooks.choices import IncidentStatus
from tests.conftest import verified_client
from tests.factories import (
    CarrierFactory,
    ContractFactory,
    IncidentFactory,
    MissionFactory,
    ShipmentFactory,
    TenderFactory,
    VehicleFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(carrier_a: Any, carrier_b: Any) -> dict[str, Any]:
    """A shipment with a tender, a mission on another shipment, an incident and a contract."""
    shipment = ShipmentFactory()
    tender = TenderFactory(shipment=shipment, carrier=carrier_a)
    mission = MissionFactory(carrier=carrier_b)
    incident = IncidentFactory(mission=mission, carrier=carrier_b)
    contract = ContractFactory(carrier=carrier_a)
    return {
        "shipment": shipment,
        "tender": tender,
        "mission": mission,
        "incident": incident,
        "contract": contract,
        "carrier": carrier_a,
    }


@pytest.fixture
def fake_dispatch(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Stand-ins for missions.tendering.dispatch: record calls; the waterfall tenders to the top-ranked carrier."""
    import missions.tendering.dispatch as module

    calls: dict[str, list[Any]] = {"publish": [], "waterfall": []}

    def tender_publish(*, tender_id: int) -> None:
        calls["publish"].append(tender_id)

    def waterfall_start(
        *, shipment_id: int, actor: Actor, carrier_ids: list[int] | None = None, offered_price_usd: Any = None
    ) -> Tender | None:
        from missions.selectors import carrier_ranking

        calls["waterfall"].append((shipment_id, offered_price_usd))
        fits = [f for f in carrier_ranking(shipment=Shipment.objects.get(pk=shipment_id)) if f.eligible]
        if not fits:
            return None
        return services.tender_create(
            actor=actor, shipment_id=shipment_id, carrier_id=fits[0].carrier.pk, waterfall_rank=1
        )

    monkeypatch.setattr(module, "tender_publish", tender_publish)
    monkeypatch.setattr(module, "waterfall_start", waterfall_start)
    return calls


def _page_urls(w: dict[str, Any]) -> list[str]:
    return [
        reverse("dashboard"),
        reverse("missions:carrier_list"),
        reverse("missions:carrier_detail", kwargs={"pk": w["carrier"].pk}),
        reverse("missions:shipment_list"),
        reverse("missions:shipment_detail", kwargs={"pk": w["shipment"].pk}),
        reverse("missions:mission_list"),
        reverse("missions:mission_detail", kwargs={"pk": w["mission"].pk}),
        reverse("runbooks:incident_list"),
        reverse("runbooks:incident_detail", kwargs={"pk": w["incident"].pk}),
        reverse("sla:contract_list"),
    ]


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def _follow_messages(client: Client, response: Any) -> list[str]:
    assert response.status_code == 302
    return _messages(client.get(response["Location"]))


# --- rendering and permissions ---------------------------------------------------------------


def test_every_page_renders_for_a_read_only_user(readonly: User, world: dict[str, Any]) -> None:
    client = verified_client(readonly)
    for url in _page_urls(world):
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "console.css" in html
        # A read-only user sees no action forms.
        assert "Cancel shipment" not in html and "Start waterfall" not in html and "Acknowledge</button>" not in html


def test_pages_show_their_content(readonly: User, world: dict[str, Any]) -> None:
    client = verified_client(readonly)
    shipment, mission, incident = world["shipment"], world["mission"], world["incident"]
    html = client.get(reverse("missions:shipment_detail", kwargs={"pk": shipment.pk})).content.decode()
    assert (
        shipment.reference in html and "Carrier A" in html and f'data-live-status="tender:{world["tender"].pk}"' in html
    )
    html = client.get(reverse("missions:mission_detail", kwargs={"pk": mission.pk})).content.decode()
    assert mission.shipment.reference in html and "No telemetry received yet" in html
    html = client.get(reverse("runbooks:incident_detail", kwargs={"pk": incident.pk})).content.decode()
    assert f"INC-{incident.pk}" in html
    html = client.get(reverse("sla:contract_list")).content.decode()
    assert "Carrier A" in html and "95.00 %" in html


@pytest.mark.parametrize("index", range(10))
def test_outsider_gets_403_on_every_page(outsider: User, world: dict[str, Any], index: int) -> None:
    url = _page_urls(world)[index]
    assert verified_client(outsider).get(url).status_code == 403


def test_password_only_session_is_sent_to_login(readonly: User, world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(readonly)
    response = client.get(reverse("missions:shipment_list"))
    assert response.status_code == 302


def _action_posts(w: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    return [
        (reverse("missions:shipment_create"), {}),
        (reverse("missions:shipment_tender", kwargs={"pk": w["shipment"].pk}), {"carrier": str(w["carrier"].pk)}),
        (reverse("missions:shipment_waterfall", kwargs={"pk": w["shipment"].pk}), {}),
        (reverse("missions:shipment_cancel", kwargs={"pk": w["shipment"].pk}), {"reason": "no"}),
        (reverse("missions:tender_cancel", kwargs={"pk": w["tender"].pk}), {"reason": "no"}),
        (reverse("missions:tender_counter_decide", kwargs={"pk": w["tender"].pk}), {"decision": "accept"}),
        (reverse("missions:mission_cancel", kwargs={"pk": w["mission"].pk}), {"reason": "no"}),
        (reverse("runbooks:incident_acknowledge", kwargs={"pk": w["incident"].pk}), {}),
        (reverse("runbooks:incident_resolve", kwargs={"pk": w["incident"].pk}), {}),
    ]


@pytest.mark.parametrize("index", range(9))
def test_read_only_user_gets_403_on_every_action(
    readonly: User, world: dict[str, Any], fake_dispatch: dict[str, list[Any]], index: int
) -> None:
    url, data = _action_posts(world)[index]
    events_before = AuditEvent.objects.count()
    response = verified_client(readonly).post(url, data)
    assert response.status_code == 403
    assert AuditEvent.objects.count() == events_before
    assert Shipment.objects.get(pk=world["shipment"].pk).status == ShipmentStatus.OPEN
    assert Tender.objects.get(pk=world["tender"].pk).status == TenderStatus.PENDING
    assert Mission.objects.get(pk=world["mission"].pk).status == MissionStatus.ASSIGNED
    assert not fake_dispatch["publish"] and not fake_dispatch["waterfall"]


def test_dispatcher_cannot_respond_to_incidents(dispatcher: User, world: dict[str, Any]) -> None:
    url = reverse("runbooks:incident_acknowledge", kwargs={"pk": world["incident"].pk})
    assert verified_client(dispatcher).post(url).status_code == 403


def test_actions_refuse_get(dispatcher: User, world: dict[str, Any]) -> None:
    url = reverse("missions:shipment_cancel", kwargs={"pk": world["shipment"].pk})
    assert verified_client(dispatcher).get(url).status_code == 405


# --- creating a shipment -----------------------------------------------------------------------


def _shipment_post(**overrides: Any) -> dict[str, Any]:
    start = timezone.now() + timedelta(hours=2)
    data = {
        "origin_address": "Dallas, TX",
        "origin_region": "tx",
        "origin_lat": "32.7767",
        "origin_lon": "-96.797",
        "destination_address": "Houston, TX",
        "destination_region": "TX",
        "destination_lat": "29.7604",
        "destination_lon": "-95.3698",
        "pickup_window_start": start.strftime("%Y-%m-%dT%H:%M"),
        "pickup_window_end": (start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
        "delivery_window_start": (start + timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M"),
        "delivery_window_end": (start + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M"),
        "weight_kg": "18000",
        "target_rate_usd": "1500.00",
    }
    data.update(overrides)
    return data


def test_shipment_create_stores_it_through_the_service(dispatcher: User) -> None:
    client = verified_client(dispatcher)
    assert client.get(reverse("missions:shipment_create")).status_code == 200
    response = client.post(reverse("missions:shipment_create"), _shipment_post())
    shipment = Shipment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("missions:shipment_detail", kwargs={"pk": shipment.pk})
    assert shipment.origin_region == "TX" and shipment.weight_kg == 18000
    assert shipment.created_by == dispatcher
    event = AuditEvent.objects.get(action="shipment.created")
    assert event.actor_user == dispatcher and event.shipment_id == shipment.pk


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"weight_kg": "0"}, "weight_kg", "more than 0"),
        ({"weight_kg": "-5"}, "weight_kg", "more than 0"),
        ({"origin_lat": "95"}, "origin_lat", "less than or equal to 90"),
        ({"destination_lon": "-181"}, "destination_lon", "greater than or equal to -180"),
        ({"origin_region": "ZZ"}, "origin_region", "two-letter US state code"),
        ({"destination_region": "Texas"}, "destination_region", ""),
        ({"pickup_window_end": "2020-01-01T00:00"}, "pickup_window_end", "must end after it starts"),
        ({"delivery_window_end": "2020-01-01T00:00"}, "delivery_window_end", "must end after it starts"),
        ({"delivery_window_start": "2020-01-01T00:00"}, "delivery_window_start", "before pickup"),
        ({"origin_address": ""}, "origin_address", "required"),
    ],
)
def test_shipment_create_shows_errors_and_stores_nothing(
    dispatcher: User, overrides: dict[str, str], field: str, message: str
) -> None:
    response = verified_client(dispatcher).post(reverse("missions:shipment_create"), _shipment_post(**overrides))
    assert response.status_code == 400
    form = response.context["form"]
    assert field in form.errors
    assert message in " ".join(form.errors[field])
    assert 'class="field-error"' in response.content.decode()
    assert not Shipment.objects.exists()
    assert not AuditEvent.objects.exists()


def test_shipment_create_maps_model_errors_to_fields(dispatcher: User, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_: Any) -> Shipment:
        raise ValidationError({"origin_lat": ["Too far north."], "reference": ["Clashes."]})

    monkeypatch.setattr(services, "shipment_create", refuse)
    response = verified_client(dispatcher).post(reverse("missions:shipment_create"), _shipment_post())
    assert response.status_code == 400
    form = response.context["form"]
    assert form.errors["origin_lat"] == ["Too far north."]
    assert "Clashes." in form.non_field_errors()
    assert not Shipment.objects.exists()


# --- dispatcher actions ----------------------------------------------------------------------------


def test_tender_action_creates_a_tender_and_publishes_it(
    dispatcher: User, carrier_a: Any, fake_dispatch: dict[str, list[Any]]
) -> None:
    shipment = ShipmentFactory()
    client = verified_client(dispatcher)
    response = client.post(
        reverse("missions:shipment_tender", kwargs={"pk": shipment.pk}),
        {"carrier": str(carrier_a.pk), "offered_price_usd": "1399.00", "expiry_seconds": "600"},
    )
    tender = Tender.objects.get(shipment=shipment)
    assert tender.carrier == carrier_a and tender.offered_price_usd == Decimal("1399.00")
    assert fake_dispatch["publish"] == [tender.pk]
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.TENDERING
    assert AuditEvent.objects.filter(action="tender.created", subject_id=tender.pk, actor_user=dispatcher).exists()
    assert any("Tendered" in m for m in _follow_messages(client, response))


def test_tender_to_a_carrier_that_does_not_fit_is_refused(
    dispatcher: User, fake_dispatch: dict[str, list[Any]]
) -> None:
    paused = CarrierFactory(status=CarrierStatus.PAUSED, paused_reason="insurance lapsed")
    shipment = ShipmentFactory()
    client = verified_client(dispatcher)
    response = client.post(reverse("missions:shipment_tender", kwargs={"pk": shipment.pk}), {"carrier": str(paused.pk)})
    msgs = _follow_messages(client, response)
    assert any("insurance lapsed" in m for m in msgs)
    assert not Tender.objects.exists() and not fake_dispatch["publish"]
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.OPEN


def test_tender_on_an_assigned_shipment_is_refused(
    dispatcher: User, carrier_a: Any, fake_dispatch: dict[str, list[Any]]
) -> None:
    shipment = ShipmentFactory(status=ShipmentStatus.ASSIGNED)
    client = verified_client(dispatcher)
    response = client.post(
        reverse("missions:shipment_tender", kwargs={"pk": shipment.pk}), {"carrier": str(carrier_a.pk)}
    )
    assert any("cannot be tendered" in m for m in _follow_messages(client, response))
    assert not Tender.objects.exists()


def test_waterfall_action_calls_dispatch(dispatcher: User, carrier_a: Any, fake_dispatch: dict[str, list[Any]]) -> None:
    shipment = ShipmentFactory()
    client = verified_client(dispatcher)
    response = client.post(
        reverse("missions:shipment_waterfall", kwargs={"pk": shipment.pk}), {"offered_price_usd": "1200.50"}
    )
    assert fake_dispatch["waterfall"] == [(shipment.pk, Decimal("1200.50"))]
    assert Tender.objects.get(shipment=shipment).waterfall_rank == 1
    assert any("Waterfall started" in m for m in _follow_messages(client, response))


def test_waterfall_with_no_eligible_carrier_says_so(dispatcher: User, fake_dispatch: dict[str, list[Any]]) -> None:
    shipment = ShipmentFactory(hazmat=True)
    CarrierFactory(hazmat_allowed=False)
    client = verified_client(dispatcher)
    response = client.post(reverse("missions:shipment_waterfall", kwargs={"pk": shipment.pk}))
    assert any("No eligible carrier" in m for m in _follow_messages(client, response))
    assert not Tender.objects.exists()


def test_cancel_tender_needs_a_reason(dispatcher: User, world: dict[str, Any]) -> None:
    client = verified_client(dispatcher)
    tender = world["tender"]
    response = client.post(reverse("missions:tender_cancel", kwargs={"pk": tender.pk}), {"reason": "  "})
    assert any("reason is required" in m for m in _follow_messages(client, response))
    assert Tender.objects.get(pk=tender.pk).status == TenderStatus.PENDING

    client.post(reverse("missions:tender_cancel", kwargs={"pk": tender.pk}), {"reason": "load withdrawn"})
    tender.refresh_from_db()
    assert tender.status == TenderStatus.CANCELLED and tender.status_reason == "load withdrawn"
    event = AuditEvent.objects.get(action="tender.status_changed", subject_id=tender.pk)
    assert event.after == {"status": "cancelled"} and event.data["reason"] == "load withdrawn"


def test_illegal_move_shows_a_clear_message_and_changes_nothing(dispatcher: User, world: dict[str, Any]) -> None:
    tender = world["tender"]
    services.tender_transition(tender_id=tender.pk, to_status=TenderStatus.EXPIRED, actor=Actor.system("t"))
    events_before = AuditEvent.objects.count()
    client = verified_client(dispatcher)
    response = client.post(reverse("missions:tender_cancel", kwargs={"pk": tender.pk}), {"reason": "late"})
    assert any("cannot move from 'expired' to 'cancelled'" in m for m in _follow_messages(client, response))
    assert Tender.objects.get(pk=tender.pk).status == TenderStatus.EXPIRED
    assert AuditEvent.objects.count() == events_before


def test_cancel_mission_with_reason(dispatcher: User, world: dict[str, Any]) -> None:
    mission = world["mission"]
    client = verified_client(dispatcher)
    client.post(reverse("missions:mission_cancel", kwargs={"pk": mission.pk}), {"reason": ""})
    assert Mission.objects.get(pk=mission.pk).status == MissionStatus.ASSIGNED
    client.post(reverse("missions:mission_cancel", kwargs={"pk": mission.pk}), {"reason": "customer cancelled"})
    mission.refresh_from_db()
    assert mission.status == MissionStatus.CANCELLED and mission.status_reason == "customer cancelled"
    assert AuditEvent.objects.filter(action="mission.status_changed", mission=mission).exists()


def test_cancel_shipment_cancels_its_open_tenders(dispatcher: User, world: dict[str, Any]) -> None:
    shipment, tender = world["shipment"], world["tender"]
    client = verified_client(dispatcher)
    response = client.post(reverse("missions:shipment_cancel", kwargs={"pk": shipment.pk}), {"reason": "duplicate"})
    assert response.status_code == 302
    assert Shipment.objects.get(pk=shipment.pk).status == ShipmentStatus.CANCELLED
    assert Tender.objects.get(pk=tender.pk).status == TenderStatus.CANCELLED
    # A second cancel is refused with a message.
    response = client.post(reverse("missions:shipment_cancel", kwargs={"pk": shipment.pk}), {"reason": "again"})
    assert any("already cancelled" in m for m in _follow_messages(client, response))


def _countered_tender(carrier: Any) -> Tender:
    tender = TenderFactory(carrier=carrier)
    services.offer_record(
        tender_id=tender.pk, actor=Actor.for_carrier(carrier), kind=OfferKind.COUNTER, price_usd=Decimal("1700")
    )
    tender.refresh_from_db()
    assert tender.status == TenderStatus.COUNTERED
    return tender


def test_counter_offer_buttons_and_accept(dispatcher: User, carrier_a: Any) -> None:
    tender = _countered_tender(carrier_a)
    client = verified_client(dispatcher)
    html = client.get(reverse("missions:shipment_detail", kwargs={"pk": tender.shipment_id})).content.decode()
    assert "Accept counter" in html and "1700" in html
    client.post(reverse("missions:tender_counter_decide", kwargs={"pk": tender.pk}), {"decision": "accept"})
    tender.refresh_from_db()
    assert tender.status == TenderStatus.ACCEPTED
    mission = Mission.objects.get(tender=tender)
    assert mission.price_usd == Decimal("1700")
    html = client.get(reverse("missions:shipment_detail", kwargs={"pk": tender.shipment_id})).content.decode()
    assert f'data-mission-id="{mission.pk}"' in html


def test_counter_offer_decline(dispatcher: User, carrier_a: Any) -> None:
    tender = _countered_tender(carrier_a)
    client = verified_client(dispatcher)
    client.post(reverse("missions:tender_counter_decide", kwargs={"pk": tender.pk}), {"decision": "decline"})
    assert Tender.objects.get(pk=tender.pk).status == TenderStatus.REJECTED
    assert not Mission.objects.exists()
    # Deciding again is refused: nothing waits.
    response = client.post(reverse("missions:tender_counter_decide", kwargs={"pk": tender.pk}), {"decision": "accept"})
    assert any("no counter-offer waiting" in m for m in _follow_messages(client, response))


def test_shipment_page_explains_each_excluded_carrier(readonly: User) -> None:
    shipment = ShipmentFactory(hazmat=True, weight_kg=30000)
    heavy = CarrierFactory(name="Heavy Hauler", hazmat_allowed=True, max_weight_kg=40000)
    CarrierFactory(name="Small Box", hazmat_allowed=True, max_weight_kg=10000)
    # Driverless hazmat needs the carrier's hazmat lanes flag as well as its permit (missions.flags).
    services.carrier_flag_set(
        carrier_id=heavy.pk,
        key="hazmat_lanes",
        enabled=True,
        actor=Actor.system("test"),
        reason="permit",
        confirmed=True,
    )
    CarrierFactory(name="No Hazmat", hazmat_allowed=False)
    broken = CarrierFactory(name="Flaky API", hazmat_allowed=True)
    CarrierCircuit.objects.create(carrier=broken, state=CircuitState.OPEN, last_failure_reason="5xx burst")
    fleet = CarrierFactory(name="Degraded Fleet", hazmat_allowed=True, fleet_paused=True, fleet_paused_reason="lidar")
    html = (
        verified_client(readonly).get(reverse("missions:shipment_detail", kwargs={"pk": shipment.pk})).content.decode()
    )
    assert "1 eligible" in html
    assert "weight 30000 kg over the carrier&#x27;s 10000 kg" in html
    assert "hazmat not allowed" in html
    assert "circuit open: 5xx burst" in html
    assert "fleet paused after degradation: lidar" in html
    assert html.index("Heavy Hauler") < html.index("Small Box")
    carrier_html = verified_client(readonly).get(reverse("missions:carrier_detail", kwargs={"pk": broken.pk}))
    assert "5xx burst" in carrier_html.content.decode() and "Tendering to this carrier is paused" in (
        carrier_html.content.decode()
    )
    assert (
        "lidar"
        in verified_client(readonly).get(reverse("missions:carrier_detail", kwargs={"pk": fleet.pk})).content.decode()
    )


def test_oncall_acknowledges_and_resolves_an_incident(oncall: User) -> None:
    incident = IncidentFactory()
    client = verified_client(oncall)
    html = client.get(reverse("runbooks:incident_detail", kwargs={"pk": incident.pk})).content.decode()
    assert "Acknowledge</button>" in html
    client.post(reverse("runbooks:incident_acknowledge", kwargs={"pk": incident.pk}), {"note": "on it"})
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.ACKNOWLEDGED and incident.assignee == oncall
    client.post(reverse("runbooks:incident_resolve", kwargs={"pk": incident.pk}))
    assert type(incident).objects.get(pk=incident.pk).status == IncidentStatus.RESOLVED
    html = client.get(reverse("runbooks:incident_detail", kwargs={"pk": incident.pk})).content.decode()
    assert html.count('class="tl-item') == 2 and "on it" in html
    response = client.post(reverse("runbooks:incident_acknowledge", kwargs={"pk": incident.pk}))
    assert any("cannot move from 'resolved'" in m for m in _follow_messages(client, response))


# --- lists: filters, pagination, empty states -------------------------------------------------------


def _rows(html: str) -> int:
    return len(re.findall(r"<tr>\s*<td><a href=\"/shipments/\d+/\">", html))


def test_shipment_list_paginates_25_per_page(readonly: User) -> None:
    ShipmentFactory.create_batch(30)
    client = verified_client(readonly)
    first = client.get(reverse("missions:shipment_list")).content.decode()
    assert _rows(first) == 25 and "Page 1 of 2" in first and 'rel="next"' in first
    second = client.get(reverse("missions:shipment_list"), {"page": 2}).content.decode()
    assert _rows(second) == 5 and "Page 2 of 2" in second and 'rel="prev"' in second
    junk = client.get(reverse("missions:shipment_list"), {"page": "x"})
    assert junk.status_code == 200 and _rows(junk.content.decode()) == 25


def test_pagination_keeps_the_filters(readonly: User) -> None:
    ShipmentFactory.create_batch(27, status=ShipmentStatus.TENDERING)
    ShipmentFactory.create_batch(3)
    html = verified_client(readonly).get(reverse("missions:shipment_list"), {"status": "tendering"}).content.decode()
    assert "?status=tendering&amp;page=2" in html and "27 in all" in html


def test_shipment_list_filters_and_search(readonly: User) -> None:
    ShipmentFactory(reference="SHP-AAA", status=ShipmentStatus.OPEN)
    ShipmentFactory(reference="SHP-BBB", status=ShipmentStatus.DELIVERED, origin_address="Phoenix, AZ")
    client = verified_client(readonly)
    html = client.get(reverse("missions:shipment_list"), {"status": "delivered"}).content.decode()
    assert "SHP-BBB" in html and "SHP-AAA" not in html
    html = client.get(reverse("missions:shipment_list"), {"q": "phoenix"}).content.decode()
    assert "SHP-BBB" in html and "SHP-AAA" not in html
    html = client.get(reverse("missions:shipment_list"), {"q": "nowhere"}).content.decode()
    assert "No shipments match" in html


def test_empty_states(readonly: User) -> None:
    client = verified_client(readonly)
    assert "No shipments yet" in client.get(reverse("missions:shipment_list")).content.decode()
    assert "No missions yet" in client.get(reverse("missions:mission_list")).content.decode()
    assert "No incidents" in client.get(reverse("runbooks:incident_list")).content.decode()
    assert "No contracts yet" in client.get(reverse("sla:contract_list")).content.decode()
    assert "No carriers yet" in client.get(reverse("missions:carrier_list")).content.decode()


def test_mission_list_filters_active_and_carrier(readonly: User, carrier_a: Any, carrier_b: Any) -> None:
    running = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    done = MissionFactory(carrier=carrier_a, status=MissionStatus.COMPLETED)
    other = MissionFactory(carrier=carrier_b, status=MissionStatus.ASSIGNED)
    client = verified_client(readonly)

    def ids(params: dict[str, Any]) -> set[int]:
        html = client.get(reverse("missions:mission_list"), params).content.decode()
        return {int(x) for x in re.findall(r'<td><a href="/missions/(\d+)/">', html)}

    assert ids({"status": "active"}) == {running.pk, other.pk}
    assert ids({"carrier": carrier_a.pk}) == {running.pk, done.pk}
    assert ids({"status": "active", "carrier": carrier_a.pk}) == {running.pk}
    assert ids({"status": "completed"}) == {done.pk}


def test_incident_list_filters_open(readonly: User) -> None:
    open_one = IncidentFactory(title="Still burning")
    IncidentFactory(title="Long gone", status=IncidentStatus.RESOLVED)
    html = verified_client(readonly).get(reverse("runbooks:incident_list"), {"status": "open"}).content.decode()
    assert "Still burning" in html and "Long gone" not in html and f"INC-{open_one.pk}" in html


def test_mission_page_shows_position_and_exceptions(readonly: User, carrier_a: Any) -> None:
    vehicle = VehicleFactory(carrier=carrier_a)
    mission = MissionFactory(
        carrier=carrier_a,
        vehicle=vehicle,
        last_seen_at=timezone.now(),
        last_lat=31.5,
        last_lon=-97.1,
        last_speed_kph=88.0,
    )
    services.mission_exception_report(
        mission_id=mission.pk, kind="lost_comms", actor=Actor.for_carrier(carrier_a), detail="no LTE"
    )
    html = verified_client(readonly).get(reverse("missions:mission_detail", kwargs={"pk": mission.pk})).content.decode()
    assert "31.50000, -97.10000" in html and "88 km/h" in html
    assert "Lost communications" in html and "no LTE" in html
    assert vehicle.external_id in html
