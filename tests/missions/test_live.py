"""Live timelines over websockets: who may connect, the embedded relay, replay, channels_redis."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client, override_settings

from missions import live, services
from missions.choices import OfferKind
from missions.events import Actor
from missions.models import AuditEvent, Carrier, Shipment
from tests.conftest import require_service, verified_client
from tests.factories import MissionFactory, ShipmentFactory
from tms_console.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10  # generous upper bound for a message to arrive, never asserted as a timing


IN_PROCESS_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
async def _relay_reset() -> AsyncIterator[None]:
    await live.relay_stop()
    yield
    await live.relay_stop()


@pytest.fixture
def embedded() -> Iterator[None]:
    """The embedded default (no Redis), even when the suite runs with REDIS_URL set."""
    with override_settings(CHANNEL_LAYERS=IN_PROCESS_LAYER):
        yield


def _cookie(client: Client) -> str:
    return client.cookies["sessionid"].value


@pytest.fixture
def dispatcher_cookie(dispatcher: User) -> str:
    return _cookie(verified_client(dispatcher))


@pytest.fixture
def shipment(db: Any) -> Shipment:
    return ShipmentFactory()


def _communicator(path: str, cookie: str | None) -> WebsocketCommunicator:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def _close_code(comm: WebsocketCommunicator) -> int | None:
    connected, code = await comm.connect(timeout=TIMEOUT)
    if not connected:
        return int(code) if code is not None else None
    message = await comm.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close"
    await comm.disconnect()
    return int(message["code"])


async def _ready(comm: WebsocketCommunicator) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Connect and collect the replayed events up to the ``ready`` marker."""
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    replayed: list[dict[str, Any]] = []
    while True:
        message = await comm.receive_json_from(timeout=TIMEOUT)
        if message["type"] == "ready":
            return replayed, message
        assert message["type"] == "event", message
        replayed.append(message["event"])


async def _events_until(comm: WebsocketCommunicator, action: str, after: Any = None) -> list[dict[str, Any]]:
    """Events received until one with ``action`` (and ``after`` payload, when given) arrives."""
    got: list[dict[str, Any]] = []
    while not got or got[-1]["action"] != action or (after is not None and got[-1]["after"] != after):
        message = await comm.receive_json_from(timeout=TIMEOUT)
        assert message["type"] == "event"
        got.append(message["event"])
    return got


# --- who may connect ----------------------------------------------------------------------------


async def test_anonymous_socket_is_closed_4401(shipment: Shipment) -> None:
    assert await _close_code(_communicator(f"/ws/timeline/shipment/{shipment.pk}/", None)) == 4401


@pytest.fixture
def password_only_cookie(dispatcher: User) -> str:
    client = Client()
    client.force_login(dispatcher)  # no one-time code in this session
    return _cookie(client)


async def test_session_without_otp_is_refused(shipment: Shipment, password_only_cookie: str) -> None:
    comm = _communicator(f"/ws/timeline/shipment/{shipment.pk}/", password_only_cookie)
    assert await _close_code(comm) == 4401


@pytest.fixture
def foreign_device_cookie(dispatcher: User, readonly: User) -> str:
    """A session whose OTP device belongs to somebody else."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client = verified_client(dispatcher)
    session = client.session
    session["otp_device_id"] = TOTPDevice.objects.get(user=readonly).persistent_id
    session.save()
    return _cookie(client)


async def test_session_verified_with_another_users_device_is_refused(
    shipment: Shipment, foreign_device_cookie: str
) -> None:
    comm = _communicator(f"/ws/timeline/shipment/{shipment.pk}/", foreign_device_cookie)
    assert await _close_code(comm) == 4401


@pytest.fixture
def outsider_cookie(outsider: User) -> str:
    return _cookie(verified_client(outsider))


async def test_verified_user_without_view_permission_is_refused_4403(shipment: Shipment, outsider_cookie: str) -> None:
    assert await _close_code(_communicator(f"/ws/timeline/shipment/{shipment.pk}/", outsider_cookie)) == 4403


async def test_unknown_subject_is_closed_4404(dispatcher_cookie: str) -> None:
    assert await _close_code(_communicator("/ws/timeline/shipment/999999/", dispatcher_cookie)) == 4404


# --- the embedded relay ------------------------------------------------------------------------------


def _tender_and_accept(shipment_id: int) -> int:
    """What a worker process does: tender, then the carrier accepts. Returns the mission id."""
    carrier = Carrier.objects.create(
        name="Relay Carrier", slug="relay-carrier", kind="autonomous", max_autonomy_level=4, operating_regions=["TX"]
    )
    tender = services.tender_create(actor=Actor.system("test"), shipment_id=shipment_id, carrier_id=carrier.pk)
    services.offer_record(
        tender_id=tender.pk,
        actor=Actor.for_carrier(carrier),
        kind=OfferKind.ACCEPT,
        price_usd=Decimal("1500"),
        route_id="I-45",
    )
    return int(tender.mission.pk)


@pytest.mark.usefixtures("embedded")
async def test_dispatcher_sees_work_done_in_another_thread_via_the_relay(
    shipment: Shipment, dispatcher_cookie: str
) -> None:
    assert live.relay_needed()
    comm = _communicator(f"/ws/timeline/shipment/{shipment.pk}/?after=0", dispatcher_cookie)
    replayed, ready = await _ready(comm)
    assert replayed == [] and ready["cursor"] == 0 and ready["kind"] == "shipment"
    assert live.relay_cursor() is not None

    # Another thread has its own DB connection, as a Celery worker would.
    mission_id = await asyncio.to_thread(_tender_and_accept, shipment.pk)

    events = await _events_until(comm, "shipment.status_changed", after={"status": "assigned"})
    actions = [e["action"] for e in events]
    assert "tender.created" in actions and "offer.accept" in actions and "mission.created" in actions
    created = next(e for e in events if e["action"] == "mission.created")
    assert created["mission_id"] == mission_id and created["shipment_id"] == shipment.pk
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert events[-1]["after"] == {"status": "assigned"}
    await comm.disconnect()


@pytest.mark.usefixtures("embedded")
async def test_replay_after_cursor_returns_exactly_the_missed_events(
    shipment: Shipment, dispatcher_cookie: str
) -> None:
    await asyncio.to_thread(_tender_and_accept, shipment.pk)
    all_ids = await asyncio.to_thread(
        lambda: list(AuditEvent.objects.filter(shipment=shipment).order_by("id").values_list("id", flat=True))
    )
    assert len(all_ids) >= 4
    seen_up_to = all_ids[1]  # the page had rendered the first two events

    comm = _communicator(f"/ws/timeline/shipment/{shipment.pk}/?after={seen_up_to}", dispatcher_cookie)
    replayed, ready = await _ready(comm)
    assert [e["id"] for e in replayed] == all_ids[2:]
    assert ready["cursor"] == all_ids[-1]
    # Nothing is delivered twice once live (the relay starts past these rows).
    assert await comm.receive_nothing(timeout=1.5)
    await comm.disconnect()


@pytest.mark.usefixtures("embedded")
async def test_events_of_other_shipments_are_not_relayed(shipment: Shipment, dispatcher_cookie: str) -> None:
    other = await asyncio.to_thread(ShipmentFactory)
    comm = _communicator(f"/ws/timeline/shipment/{shipment.pk}/?after=0", dispatcher_cookie)
    await _ready(comm)
    await asyncio.to_thread(
        services.shipment_cancel, shipment_id=other.pk, actor=Actor.system("test"), reason="elsewhere"
    )
    await asyncio.to_thread(
        services.shipment_cancel, shipment_id=shipment.pk, actor=Actor.system("test"), reason="mine"
    )
    message = await comm.receive_json_from(timeout=TIMEOUT)
    assert message["event"]["shipment_id"] == shipment.pk and message["event"]["data"] == {"reason": "mine"}
    await comm.disconnect()


@pytest.mark.usefixtures("embedded")
async def test_mission_page_follows_mission_and_shipment_events(dispatcher_cookie: str) -> None:
    mission = await asyncio.to_thread(MissionFactory)
    comm = _communicator(f"/ws/timeline/mission/{mission.pk}/?after=0", dispatcher_cookie)
    await _ready(comm)
    await asyncio.to_thread(
        services.mission_exception_report,
        mission_id=mission.pk,
        kind="lost_comms",
        actor=Actor.system("gap-check"),
        detail="silent for 90 s",
    )
    message = await comm.receive_json_from(timeout=TIMEOUT)
    assert message["event"]["action"] == "mission.exception" and message["event"]["mission_id"] == mission.pk
    await comm.disconnect()


@pytest.mark.usefixtures("embedded")
async def test_incidents_feed_gets_new_incidents(dispatcher_cookie: str) -> None:
    from runbooks.services import incident_open

    comm = _communicator("/ws/timeline/incidents/", dispatcher_cookie)
    await _ready(comm)
    incident, created = await asyncio.to_thread(
        incident_open, actor=Actor.system("test"), kind="other", title="Depot flooded"
    )
    assert created
    message = await comm.receive_json_from(timeout=TIMEOUT)
    assert message["event"]["action"] == "incident.triggered" and message["event"]["incident_id"] == incident.pk
    await comm.disconnect()


def test_relay_picks_up_a_row_that_committed_late(shipment: Shipment) -> None:
    """An id below the cursor that was not visible yet is delivered once it shows up."""
    services.shipment_cancel(shipment_id=shipment.pk, actor=Actor.system("test"), reason="late")
    rows = list(AuditEvent.objects.order_by("id"))
    relay = live._Relay(loop=asyncio.new_event_loop())
    relay.cursor = rows[-1].pk
    relay.gaps = {rows[0].pk: time.monotonic()}
    batch = relay.poll()
    assert [m["event"]["id"] for _, m in batch] == [rows[0].pk]
    assert relay.gaps == {}
    assert relay.poll() == []
    relay.loop.close()


def test_relay_tracks_holes_in_the_ids(shipment: Shipment) -> None:
    services.shipment_cancel(shipment_id=shipment.pk, actor=Actor.system("test"), reason="x")
    rows = list(AuditEvent.objects.order_by("id"))
    relay = live._Relay(loop=asyncio.new_event_loop())
    relay.cursor = rows[0].pk - 3  # two ids before the first row are not visible (yet)
    batch = relay.poll()
    assert [m["event"]["id"] for _, m in batch] == [r.pk for r in rows]
    assert set(relay.gaps) == {rows[0].pk - 2, rows[0].pk - 1}
    relay.loop.close()


# --- with Redis: broadcast at commit, no relay -------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")


async def test_live_updates_through_channels_redis(shipment: Shipment, dispatcher_cookie: str) -> None:
    require_service("Redis (REDIS_URL)", bool(REDIS_URL))
    layers = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
    with override_settings(CHANNEL_LAYERS=layers):
        assert not live.relay_needed()
        comm = _communicator(f"/ws/timeline/shipment/{shipment.pk}/?after=0", dispatcher_cookie)
        await _ready(comm)
        assert live.relay_cursor() is None  # events.py broadcasts; the relay must not run
        mission_id = await asyncio.to_thread(_tender_and_accept, shipment.pk)
        events = await _events_until(comm, "mission.created")
        assert events[-1]["mission_id"] == mission_id
        await comm.disconnect()
