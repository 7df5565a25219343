"""Per-carrier feature flags: the service and its audit event, evaluation through OpenFeature,
tender eligibility and ranking, the console page (permissions, CSRF, bad input) and the tender form."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import escape
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from missions import flags, services
from missions.bus.types import EVENT_ACTIONS, event_schema
from missions.choices import CarrierKind
from missions.events import Actor, replay_payload
from missions.models import AuditEvent, Carrier, CarrierFlag, Shipment, Tender
from missions.selectors import carrier_fit, carrier_ranking, tendered_autonomy_level
from tests.conftest import verified_client
from tests.factories import CarrierFactory, ShipmentFactory
from tms_console.domain import DomainError

pytestmark = pytest.mark.django_db

# A lane no corridor of missions.routes serves: Dallas -> Amarillo, TX.
OFF_CORRIDOR = {"destination_address": "Amarillo, TX", "destination_lat": 35.2220, "destination_lon": -101.8313}


def switch(carrier: Carrier, key: str, enabled: bool = True, *, actor: Actor | None = None) -> CarrierFlag:
    return services.carrier_flag_set(
        carrier_id=carrier.pk,
        key=key,
        enabled=enabled,
        actor=actor or Actor.system("test"),
        reason="pilot approved",
        confirmed=True,
    )


def flag_events(carrier: Carrier) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="carrier.flag_changed", carrier=carrier).order_by("id"))


# --- the service and its audit event --------------------------------------------------------------


def test_every_change_is_audited_with_the_registered_data_schema(admin_user: User) -> None:
    carrier = CarrierFactory()
    actor = Actor.for_user(admin_user)
    assert not flags.flag_enabled(carrier, flags.NIGHT_OPERATIONS)  # never set: off

    switch(carrier, flags.NIGHT_OPERATIONS, actor=actor)
    assert flags.flag_enabled(carrier, flags.NIGHT_OPERATIONS)
    switch(carrier, flags.NIGHT_OPERATIONS, actor=actor)  # already on: nothing to record
    switch(carrier, flags.NIGHT_OPERATIONS, False, actor=actor)
    assert not flags.flag_enabled(carrier, flags.NIGHT_OPERATIONS)

    on, off = flag_events(carrier)
    assert (on.before, on.after, off.before, off.after) == (
        {"enabled": False},
        {"enabled": True},
        {"enabled": True},
        {"enabled": False},
    )
    assert on.data == {
        "flag": "night_operations",
        "label": "Night operations",
        "enabled": True,
        "reason": "pilot approved",
    }
    assert on.actor_user == admin_user and on.subject_type == "carrier" and on.subject_id == carrier.pk
    row = CarrierFlag.objects.get(carrier=carrier, key=flags.NIGHT_OPERATIONS)
    assert row.changed_by == "admin" and row.reason == "pilot approved" and not row.enabled
    # The action is in the bus registry, and the event's data matches the schema published for it.
    assert "carrier.flag_changed" in EVENT_ACTIONS
    schema = event_schema("carrier.flag_changed")["properties"]["data"]
    jsonschema.validate(replay_payload(on), schema)
    bad = {**replay_payload(on), "data": {"flag": "night_operations"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize(
    ("kind", "key", "enabled", "reason", "confirmed", "field"),
    [
        (CarrierKind.AUTONOMOUS, "warp_drive", True, "why not", True, "flag"),
        (CarrierKind.AUTONOMOUS, flags.HAZMAT_LANES, True, "   ", True, "reason"),
        (CarrierKind.AUTONOMOUS, flags.L5_CORRIDORS, True, "pilot", False, "confirm"),
        (CarrierKind.HUMAN_DRIVEN, flags.NIGHT_OPERATIONS, True, "pilot", True, "flag"),
    ],
)
def test_a_refused_change_stores_and_records_nothing(
    kind: str, key: str, enabled: bool, reason: str, confirmed: bool, field: str
) -> None:
    carrier = CarrierFactory(kind=kind)
    with pytest.raises(DomainError) as refused:
        services.carrier_flag_set(
            carrier_id=carrier.pk, key=key, enabled=enabled, actor=Actor.system("t"), reason=reason, confirmed=confirmed
        )
    assert refused.value.field == field
    assert not CarrierFlag.objects.exists() and not flag_events(carrier)


def test_a_safe_flag_needs_no_confirmation_and_switching_off_never_does() -> None:
    carrier = CarrierFactory()
    services.carrier_flag_set(
        carrier_id=carrier.pk, key=flags.TELEMETRY_V2, enabled=True, actor=Actor.system("t"), reason="v2 pilot"
    )
    switch(carrier, flags.HAZMAT_LANES)
    services.carrier_flag_set(
        carrier_id=carrier.pk, key=flags.HAZMAT_LANES, enabled=False, actor=Actor.system("t"), reason="incident"
    )
    assert flags.carrier_flag_states(carrier) == {
        "night_operations": False,
        "hazmat_lanes": False,
        "autonomy_l5_corridors": False,
        "telemetry_schema_v2": True,
    }


# --- evaluation through OpenFeature ----------------------------------------------------------------


def test_the_openfeature_client_evaluates_per_carrier_and_fails_closed() -> None:
    a, b = CarrierFactory(), CarrierFactory()
    switch(a, flags.NIGHT_OPERATIONS)
    client = api.get_client(flags.DOMAIN)
    on = client.get_boolean_details(flags.NIGHT_OPERATIONS, False, flags.carrier_context(a))
    assert on.value is True and on.reason == Reason.TARGETING_MATCH and on.variant == "on"
    never = client.get_boolean_details(flags.NIGHT_OPERATIONS, False, flags.carrier_context(b))
    assert never.value is False and never.reason == Reason.DEFAULT
    unknown = client.get_boolean_details("warp_drive", False, flags.carrier_context(a))
    assert unknown.value is False and unknown.error_code == ErrorCode.FLAG_NOT_FOUND
    no_carrier = client.get_boolean_details(flags.NIGHT_OPERATIONS, False, EvaluationContext(targeting_key=a.slug))
    assert no_carrier.value is False and no_carrier.error_code == ErrorCode.INVALID_CONTEXT
    wrong_type = client.get_string_details(flags.NIGHT_OPERATIONS, "x", flags.carrier_context(a))
    assert wrong_type.value == "x" and wrong_type.error_code == ErrorCode.TYPE_MISMATCH


def test_a_ranking_reads_the_flags_once_however_many_carriers() -> None:
    shipment = ShipmentFactory(hazmat=True, needs_night_operations=True, max_autonomy_level=None)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            carrier_ranking(shipment=shipment)
        return len(captured.captured_queries)

    for _ in range(2):
        switch(CarrierFactory(hazmat_allowed=True, max_autonomy_level=5), flags.HAZMAT_LANES)
    few = queries()
    for _ in range(5):
        switch(CarrierFactory(hazmat_allowed=True, max_autonomy_level=5), flags.NIGHT_OPERATIONS)
    assert queries() == few


# --- eligibility and ranking ----------------------------------------------------------------------


def test_a_night_load_is_offered_only_to_carriers_with_night_operations() -> None:
    shipment = ShipmentFactory(needs_night_operations=True)
    day_only, night, human = (
        CarrierFactory(name="Day Only"),
        CarrierFactory(name="Night"),
        CarrierFactory(name="Human", kind=CarrierKind.HUMAN_DRIVEN, max_autonomy_level=0),
    )
    switch(night, flags.NIGHT_OPERATIONS)
    fits = {f.carrier.pk: f for f in carrier_ranking(shipment=shipment)}
    assert fits[day_only.pk].reasons == ["night operations flag off"]
    assert fits[night.pk].eligible and fits[human.pk].eligible  # drivers are no autonomy capability
    # The tender service re-checks: a hand-made request for the excluded carrier is refused.
    with pytest.raises(DomainError, match="night operations flag off"):
        services.tender_create(actor=Actor.system("t"), shipment_id=shipment.pk, carrier_id=day_only.pk)
    assert not Tender.objects.exists()
    # The same load by day goes to everyone.
    day = ShipmentFactory(needs_night_operations=False)
    assert all(f.eligible for f in carrier_ranking(shipment=day))


def test_driverless_hazmat_needs_the_permit_and_the_hazmat_lanes_flag() -> None:
    shipment = ShipmentFactory(hazmat=True)
    permit_only = CarrierFactory(name="Permit Only", hazmat_allowed=True)
    both = CarrierFactory(name="Both", hazmat_allowed=True)
    flag_only = CarrierFactory(name="Flag Only", hazmat_allowed=False)
    switch(both, flags.HAZMAT_LANES)
    switch(flag_only, flags.HAZMAT_LANES)
    fits = {f.carrier.pk: f for f in carrier_ranking(shipment=shipment)}
    assert fits[permit_only.pk].reasons == ["hazmat lanes flag off"]
    assert fits[both.pk].eligible
    assert fits[flag_only.pk].reasons == ["hazmat not allowed"]
    # Not a hazmat load: the flag changes nothing.
    assert carrier_fit(carrier=permit_only, shipment=ShipmentFactory(hazmat=False)).eligible


def test_level_5_runs_only_with_the_corridor_flag_on_a_corridor_and_ranks_first() -> None:
    corridor_load = ShipmentFactory(max_autonomy_level=None)  # Dallas -> Houston: the I-45 corridor
    off_corridor_load = ShipmentFactory(max_autonomy_level=None, **OFF_CORRIDOR)
    supervised_load = ShipmentFactory(max_autonomy_level=4)
    level4 = CarrierFactory(name="Alpha Level 4", max_autonomy_level=4)
    level5 = CarrierFactory(name="Zulu Level 5", max_autonomy_level=5)

    # Without its flag, the level 5 carrier is tendered as level 4 and ranks as one (by name here).
    assert tendered_autonomy_level(carrier=level5, shipment=corridor_load) == 4
    assert [f.carrier.pk for f in carrier_ranking(shipment=corridor_load)] == [level4.pk, level5.pk]

    switch(level5, flags.L5_CORRIDORS)
    assert tendered_autonomy_level(carrier=level5, shipment=corridor_load) == 5
    assert [f.carrier.pk for f in carrier_ranking(shipment=corridor_load)] == [level5.pk, level4.pk]
    # Off a corridor, or for a shipper who allows at most level 4, it runs supervised: eligible, no bonus.
    assert tendered_autonomy_level(carrier=level5, shipment=off_corridor_load) == 4
    assert [f.carrier.pk for f in carrier_ranking(shipment=off_corridor_load)] == [level4.pk, level5.pk]
    fits = carrier_ranking(shipment=supervised_load)
    assert all(f.eligible for f in fits) and [f.carrier.pk for f in fits] == [level4.pk, level5.pk]
    # A level 4 carrier is unaffected by the flag.
    switch(level4, flags.L5_CORRIDORS)
    assert tendered_autonomy_level(carrier=level4, shipment=corridor_load) == 4


def test_the_telemetry_v2_flag_does_not_change_tendering() -> None:
    shipment = ShipmentFactory(max_autonomy_level=None)
    a, b = CarrierFactory(name="A"), CarrierFactory(name="B")
    before = [(f.carrier.pk, f.score) for f in carrier_ranking(shipment=shipment)]
    switch(b, flags.TELEMETRY_V2)
    assert [(f.carrier.pk, f.score) for f in carrier_ranking(shipment=shipment)] == before
    assert {a.pk, b.pk} == {pk for pk, _ in before}


# --- the console page -------------------------------------------------------------------------------

PAGE = "/carriers/flags/"


def post_flag(client: Client, carrier: Carrier, **fields: Any) -> Any:
    return client.post(reverse("missions:carrier_flag_set", kwargs={"pk": carrier.pk}), fields)


def test_everyone_sees_the_flags_and_their_effects_only_a_platform_admin_switches(
    readonly: User, dispatcher: User, admin_user: User
) -> None:
    carrier = CarrierFactory(name="Lonestar")
    CarrierFactory(name="Red River", kind=CarrierKind.HUMAN_DRIVEN, max_autonomy_level=0)
    html = verified_client(readonly).get(PAGE).content.decode()
    for spec in flags.CARRIER_FLAGS.values():
        assert spec.label in html and escape(spec.effect) in html
    assert "Lonestar" in html and "Human-driven carriers (Red River)" in html
    set_url = reverse("missions:carrier_flag_set", kwargs={"pk": carrier.pk})
    assert f'action="{set_url}"' not in html and "Switch on" not in html  # nothing to switch for a viewer

    assert (
        post_flag(
            verified_client(dispatcher), carrier, flag="telemetry_schema_v2", enabled="on", reason="x"
        ).status_code
        == 403
    )
    assert not CarrierFlag.objects.exists()

    admin = verified_client(admin_user)
    page = admin.get(PAGE).content.decode()
    assert f'action="{set_url}"' in page and "Switch on night operations" in page
    assert 'name="csrfmiddlewaretoken"' in page.split(f'action="{set_url}"')[1].split("</form>")[0]
    response = post_flag(admin, carrier, flag="night_operations", enabled="on", reason="night pilot", confirm="on")
    assert response.status_code == 302
    assert flags.flag_enabled(carrier, flags.NIGHT_OPERATIONS)
    event = flag_events(carrier)[0]
    assert event.actor_user == admin_user and event.data["reason"] == "night pilot"
    page = admin.get(PAGE).content.decode()
    assert "Switch off night operations" in page and "by admin: night pilot" in page
    # The carrier's own page shows the flag too.
    detail = admin.get(reverse("missions:carrier_detail", kwargs={"pk": carrier.pk})).content.decode()
    assert 'data-flag="night_operations"><span class="badge s-eligible">On</span>' in detail


def test_a_password_only_session_and_a_forged_request_reach_nothing(admin_user: User) -> None:
    carrier = CarrierFactory()
    password_only = Client()
    password_only.force_login(admin_user)
    assert password_only.get(PAGE).status_code == 302
    assert post_flag(password_only, carrier, flag="telemetry_schema_v2", enabled="on", reason="x").status_code == 302
    forged = Client(enforce_csrf_checks=True)
    forged.cookies = verified_client(admin_user).cookies
    assert post_flag(forged, carrier, flag="telemetry_schema_v2", enabled="on", reason="x").status_code == 403
    assert not CarrierFlag.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"flag": "night_operations", "enabled": "on", "reason": "pilot"}, "Tick the confirmation"),
        ({"flag": "night_operations", "enabled": "on", "reason": "", "confirm": "on"}, "This field is required"),
        ({"flag": "warp_drive", "enabled": "on", "reason": "pilot", "confirm": "on"}, "Select a valid choice"),
        ({"flag": "night_operations", "enabled": "maybe", "reason": "pilot", "confirm": "on"}, "Select a valid choice"),
        ({"flag": "night_operations", "enabled": "on", "reason": "x" * 301, "confirm": "on"}, "at most 300"),
    ],
)
def test_bad_input_is_a_form_error_and_changes_nothing(admin_user: User, fields: dict[str, str], message: str) -> None:
    carrier = CarrierFactory()
    response = post_flag(verified_client(admin_user), carrier, **fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not CarrierFlag.objects.filter(enabled=True).exists() and not flag_events(carrier)


def test_a_human_driven_carrier_has_no_flags_to_switch(admin_user: User) -> None:
    human = CarrierFactory(kind=CarrierKind.HUMAN_DRIVEN, max_autonomy_level=0)
    response = post_flag(
        verified_client(admin_user), human, flag="night_operations", enabled="on", reason="pilot", confirm="on"
    )
    assert response.status_code == 400 and "autonomy flags do not apply" in response.content.decode()
    assert not CarrierFlag.objects.exists()


def test_the_page_says_so_when_there_is_no_autonomous_carrier(admin_user: User) -> None:
    html = verified_client(admin_user).get(PAGE).content.decode()
    assert "No autonomous carriers" in html


def test_switching_a_flag_changes_which_carriers_the_tender_form_offers(admin_user: User) -> None:
    shipment: Shipment = ShipmentFactory(needs_night_operations=True)
    night = CarrierFactory(name="Night Owl")
    other = CarrierFactory(name="Day Lark")
    switch(night, flags.NIGHT_OPERATIONS)
    admin = verified_client(admin_user)
    url = reverse("missions:shipment_detail", kwargs={"pk": shipment.pk})

    def offered() -> set[int]:
        form = admin.get(url).context["tender_form"]
        return {c.pk for c in form.fields["carrier"].queryset}

    assert offered() == {night.pk}
    assert (
        post_flag(admin, other, flag="night_operations", enabled="on", reason="pilot", confirm="on").status_code == 302
    )
    assert offered() == {night.pk, other.pk}
    assert post_flag(admin, night, flag="night_operations", enabled="off", reason="incident").status_code == 302
    assert offered() == {other.pk}
