"""WebSocket ingest (partner token, acknowledgements) and the live map (fleet on connect, coalesced frames)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from oauth2_provider.models import AccessToken

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier, Mission
from missions.models.partner import TokenCertificateBinding
from missions.models.telemetry import TelemetryWindowEvent
from missions.partner.services import partner_client_create
from missions.telemetry import consumers
from missions.telemetry.ingest import FLEET_GROUP, ingest_events
from missions.telemetry.map_state import fleet_state
from tests.conftest import require_service, verified_client
from tests.factories import MissionFactory
from tests.telemetry.conftest import make_event, seconds_ago
from tms_console.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 10  # an upper bound for a message to arrive, never asserted as a timing
IN_PROCESS_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
REDIS_URL = os.environ.get("REDIS_URL", "")


@pytest.fixture(autouse=True)
def _in_process_layer() -> Iterator[None]:
    with override_settings(CHANNEL_LAYERS=IN_PROCESS_LAYER, LIVEMAP_FRAME_SECONDS=0.05):
        yield


def issue_token(carrier: Carrier, *, scope: str = "telemetry:write", expires_in: int = 600) -> str:
    issued = partner_client_create(
        carrier_id=carrier.pk,
        name=f"{carrier.slug} telemetry",
        scopes=["telemetry:write", "missions:read"],
        actor=Actor.system("test"),
    )
    token = f"tok-{carrier.slug}-{scope}-{expires_in}"
    AccessToken.objects.create(
        application=issued.client.application,
        token=token,
        scope=scope,
        expires=timezone.now() + timedelta(seconds=expires_in),
    )
    return token


def ws(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> WebsocketCommunicator:
    base = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    return WebsocketCommunicator(application, path, headers=base + (headers or []))


async def close_code(comm: WebsocketCommunicator) -> int:
    connected, code = await comm.connect(timeout=TIMEOUT)
    if not connected:
        return int(code or 0)
    message = await comm.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close"
    await comm.disconnect()
    return int(message["code"])


# --- Ingest stream -------------------------------------------------------------------


async def test_ingest_stream_acknowledges_each_batch(carrier_a: Carrier) -> None:
    mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    token = await sync_to_async(issue_token)(carrier_a)
    comm = ws("/ws/ingest/", [(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    ready = await comm.receive_json_from(timeout=TIMEOUT)
    assert ready["type"] == "ready" and ready["carrier"] == "carrier-a"

    good = await sync_to_async(make_event)(mission, ts=seconds_ago(1))
    bad = dict(good, event_id="not-a-uuid")
    await comm.send_json_to({"seq": 1, "events": [good, bad]})
    assert await comm.receive_json_from(timeout=TIMEOUT) == {
        "ack": 1,
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 1, "reason": "event_id: 'not-a-uuid' is not a UUID"}],
    }
    await comm.send_json_to({"seq": 2, "events": [good]})  # a resend after a lost ack
    assert await comm.receive_json_from(timeout=TIMEOUT) == {"ack": 2, "accepted": 0, "duplicates": 1, "rejected": []}
    await comm.send_json_to({"events": []})
    assert (await comm.receive_json_from(timeout=TIMEOUT))["error"] == "seq: expected an integer"
    await comm.send_to(text_data="{not json")
    assert (await comm.receive_json_from(timeout=TIMEOUT))["error"] == "message: not valid JSON"
    await comm.disconnect()
    assert await sync_to_async(TelemetryWindowEvent.objects.count)() == 1


async def test_ingest_stream_refuses_unstorable_strings_per_event_and_outside_events_per_message(
    carrier_a: Carrier,
) -> None:
    mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    token = await sync_to_async(issue_token)(carrier_a)
    comm = ws("/ws/ingest/", [(b"authorization", f"Bearer {token}".encode())])
    await comm.connect(timeout=TIMEOUT)
    await comm.receive_json_from(timeout=TIMEOUT)

    good = [await sync_to_async(make_event)(mission, ts=seconds_ago(n)) for n in (3, 2, 1)]
    lone = dict(await sync_to_async(make_event)(mission), vehicle_id="TRK\ud800")
    await comm.send_to(text_data=json.dumps({"seq": 1, "events": [good[0], lone]}))  # the escape "\ud800"
    ack = await comm.receive_json_from(timeout=TIMEOUT)
    assert (ack["ack"], ack["accepted"]) == (1, 1)
    assert ack["rejected"] == [
        {"index": 1, "reason": "vehicle_id: holds U+D800 (a lone surrogate), which cannot be stored"}
    ]

    raw = json.dumps({"seq": 2, "events": [lone, good[1]]}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    await comm.send_to(bytes_data=raw)  # the surrogate as raw bytes
    ack = await comm.receive_json_from(timeout=TIMEOUT)
    assert (ack["ack"], ack["accepted"], [r["index"] for r in ack["rejected"]]) == (2, 1, [0])

    await comm.send_to(text_data=json.dumps({"seq": 3, "events": [good[2]], "note": "\x00"}))
    assert await comm.receive_json_from(timeout=TIMEOUT) == {
        "ack": 3,
        "error": "/note: This string holds U+0000 (NUL), which cannot be stored.",
        "pointer": "/note",
    }
    await comm.disconnect()
    stored = {
        str(e) for e in await sync_to_async(list)(TelemetryWindowEvent.objects.values_list("event_id", flat=True))
    }
    assert stored == {good[0]["event_id"], good[1]["event_id"]}


async def test_ingest_stream_accepts_the_token_in_the_query_string(carrier_a: Carrier) -> None:
    token = await sync_to_async(issue_token)(carrier_a)
    comm = ws(f"/ws/ingest/?access_token={token}")
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "ready"
    await comm.disconnect()


async def test_ingest_stream_refuses_bad_tokens(carrier_a: Carrier) -> None:
    assert await close_code(ws("/ws/ingest/")) == 4401
    assert await close_code(ws("/ws/ingest/?access_token=nope")) == 4401
    expired = await sync_to_async(issue_token)(carrier_a, expires_in=-5)
    assert await close_code(ws(f"/ws/ingest/?access_token={expired}")) == 4401
    read_only = await sync_to_async(issue_token)(carrier_a, scope="missions:read")
    assert await close_code(ws(f"/ws/ingest/?access_token={read_only}")) == 4403


async def test_ingest_stream_refuses_certificate_bound_tokens(carrier_a: Carrier) -> None:
    # RFC 8705 §3: a token issued over a client certificate is good only with that certificate,
    # which a websocket behind the edge does not carry.
    token = await sync_to_async(issue_token)(carrier_a)

    def bind() -> None:
        access = AccessToken.objects.get(token=token)
        TokenCertificateBinding.objects.create(access_token=access, x5t_s256="A" * 43)

    await sync_to_async(bind)()
    assert await close_code(ws(f"/ws/ingest/?access_token={token}")) == 4403


async def test_ingest_stream_cannot_write_another_carriers_mission(carrier_a: Carrier, carrier_b: Carrier) -> None:
    theirs = await sync_to_async(MissionFactory)(carrier=carrier_b, status=MissionStatus.EN_ROUTE)
    token = await sync_to_async(issue_token)(carrier_a)
    comm = ws(f"/ws/ingest/?access_token={token}")
    await comm.connect(timeout=TIMEOUT)
    await comm.receive_json_from(timeout=TIMEOUT)
    await comm.send_json_to({"seq": 7, "events": [await sync_to_async(make_event)(theirs)]})
    ack = await comm.receive_json_from(timeout=TIMEOUT)
    assert ack["ack"] == 7 and ack["accepted"] == 0
    assert ack["rejected"][0]["reason"] == f"mission_id: mission {theirs.pk} is not a mission of this carrier"
    await comm.disconnect()


# --- Live map ------------------------------------------------------------------------


async def _map(user: User) -> WebsocketCommunicator:
    client = await sync_to_async(verified_client)(user)
    cookie = client.cookies["sessionid"].value
    return ws("/ws/map/", [(b"cookie", f"sessionid={cookie}".encode())])


async def test_live_map_refuses_anonymous_and_unprivileged(outsider: User) -> None:
    assert await close_code(ws("/ws/map/")) == 4401
    assert await close_code(await _map(outsider)) == 4403


async def test_live_map_sends_fleet_then_coalesced_positions(dispatcher: User, carrier_a: Carrier) -> None:
    mission: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    silent: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    await sync_to_async(ingest_events)(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(2))], source="t")
    await sync_to_async(ingest_events)(carrier=carrier_a, events=[make_event(silent, ts=seconds_ago(600))], source="t")

    comm = await _map(dispatcher)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    snapshot = await comm.receive_json_from(timeout=TIMEOUT)
    assert snapshot["type"] == "snapshot"
    by_id = {v["mission_id"]: v for v in snapshot["vehicles"]}
    assert set(by_id) == {mission.pk, silent.pk}
    assert by_id[mission.pk]["stale"] is False and by_id[silent.pk]["stale"] is True
    assert by_id[mission.pk]["vehicle_id"] == mission.vehicle.external_id

    # Three batches arrive before the next frame: one frame, latest position only.
    layer = get_channel_layer()
    for i, lat in enumerate((30.0, 30.1, 30.2)):
        position = {
            "mission_id": mission.pk,
            "vehicle_id": "x",
            "lat": lat,
            "lon": -96.0,
            "speed_kph": 80.0,
            "heading_deg": None,
            "autonomy_mode": "autonomous",
            "status": "en_route",
            "safety_event": None,
            "last_seen_at": f"2026-11-26T10:00:0{i}.000Z",
        }
        await layer.group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": [position]})
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    while frame["type"] != "positions":
        frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert [(v["mission_id"], v["lat"]) for v in frame["vehicles"]] == [(mission.pk, 30.2)]

    await comm.send_json_to({"type": "detail", "mission_id": mission.pk})
    detail = await comm.receive_json_from(timeout=TIMEOUT)
    while detail["type"] != "detail":
        detail = await comm.receive_json_from(timeout=TIMEOUT)
    assert detail["mission"]["mission_id"] == mission.pk and detail["mission"]["exceptions"] == []
    await comm.disconnect()


async def test_ingest_broadcasts_one_message_per_batch(carrier_a: Carrier) -> None:
    missions = [await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(3)]
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(FLEET_GROUP, channel)
    events: list[dict[str, Any]] = []
    for m in missions:
        events += [make_event(m, ts=seconds_ago(3)), make_event(m, ts=seconds_ago(1))]
    await sync_to_async(ingest_events)(carrier=carrier_a, events=events, source="t")
    message = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
    assert message["type"] == "fleet.positions"
    assert sorted(p["mission_id"] for p in message["positions"]) == sorted(m.pk for m in missions)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 0.2)


async def test_live_map_polls_the_database_for_batches_stored_by_another_process(
    dispatcher: User, carrier_a: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    mission: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    await sync_to_async(ingest_events)(carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(5))], source="t")
    comm = await _map(dispatcher)
    await comm.connect(timeout=TIMEOUT)
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    # The MQTT bridge or a worker with the in-process layer: its broadcast never reaches this process.
    monkeypatch.setattr("missions.telemetry.ingest.fleet_broadcast", lambda positions: None)
    late = make_event(mission, ts=seconds_ago(60), position={"lat": 31.5, "lon": -96.1, "speed_kph": 50.0})
    newest = make_event(mission, ts=seconds_ago(1), position={"lat": 31.0, "lon": -96.0, "speed_kph": 90.0})
    await sync_to_async(ingest_events)(carrier=carrier_a, events=[late, newest], source="mqtt")
    frame = await comm.receive_json_from(timeout=TIMEOUT)
    while frame["type"] != "positions":
        frame = await comm.receive_json_from(timeout=TIMEOUT)
    assert [(v["mission_id"], v["lat"], v["speed_kph"]) for v in frame["vehicles"]] == [(mission.pk, 31.0, 90.0)]
    await comm.disconnect()


def _position(mission_id: int, lat: float, second: int) -> dict[str, Any]:
    return {
        "mission_id": mission_id,
        "vehicle_id": "x",
        "lat": lat,
        "lon": -96.0,
        "speed_kph": 80.0,
        "heading_deg": None,
        "autonomy_mode": "autonomous",
        "status": "en_route",
        "safety_event": None,
        "last_seen_at": f"2026-11-26T10:00:{second:02d}.000Z",
    }


async def _next(comm: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    message = await comm.receive_json_from(timeout=TIMEOUT)
    while message["type"] != kind:
        message = await comm.receive_json_from(timeout=TIMEOUT)
    return message


async def test_live_maps_of_one_process_share_one_subscription_and_the_same_frames(
    dispatcher: User, carrier_a: Carrier
) -> None:
    mission: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    layer = get_channel_layer()
    assert isinstance(layer, InMemoryChannelLayer)
    maps = [await _map(dispatcher), await _map(dispatcher)]
    for comm in maps:
        assert (await comm.connect(timeout=TIMEOUT))[0]
        assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    # Each batch is received once for the process, not once per socket.
    assert len(layer.groups[FLEET_GROUP]) == 1

    await layer.group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": [_position(mission.pk, 30.5, 1)]})
    frames = [await _next(comm, "positions") for comm in maps]
    assert frames[0] == frames[1]
    assert [(v["mission_id"], v["lat"]) for v in frames[0]["vehicles"]] == [(mission.pk, 30.5)]

    await maps[0].disconnect()
    await layer.group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": [_position(mission.pk, 30.6, 2)]})
    assert [v["lat"] for v in (await _next(maps[1], "positions"))["vehicles"]] == [30.6]
    await maps[1].disconnect()
    # The last map to leave unsubscribes the process.
    assert FLEET_GROUP not in layer.groups


async def test_frames_follow_positions_after_the_coalescing_delay_and_keep_the_least_spacing() -> None:
    frames = consumers.FleetFrames(InMemoryChannelLayer())
    loop = asyncio.get_running_loop()
    with override_settings(LIVEMAP_COALESCE_SECONDS=0.03, LIVEMAP_FRAME_SECONDS=0.5):
        # A quiet map: the first position waits only the coalescing delay, not a frame interval.
        frames.pending_since = loop.time()
        assert frames.frame_delay() == pytest.approx(0.03, abs=0.01)
        # A frame went out 0.1 s ago: the next one keeps the least spacing (a cap on frames per second).
        frames.last_frame_at = loop.time() - 0.1
        assert frames.frame_delay() == pytest.approx(0.4, abs=0.01)
        # Positions held since before the last frame was written are due at once.
        frames.last_frame_at, frames.pending_since = loop.time() - 0.6, loop.time() - 0.1
        assert frames.frame_delay() == 0.0
    with override_settings(LIVEMAP_COALESCE_SECONDS=0, LIVEMAP_FRAME_SECONDS=0):
        # No coalescing asked for: at once after a quiet spell; the spacing never drops below 50 ms.
        frames.last_frame_at, frames.pending_since = loop.time() - 1.0, loop.time()
        assert frames.frame_delay() == 0.0
        frames.last_frame_at = loop.time()
        assert frames.frame_delay() == pytest.approx(0.05, abs=0.01)


async def test_a_busy_fleet_gets_frames_no_closer_than_the_frame_interval(dispatcher: User, carrier_a: Carrier) -> None:
    mission: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    layer = get_channel_layer()
    with override_settings(LIVEMAP_COALESCE_SECONDS=0.01, LIVEMAP_FRAME_SECONDS=0.4):
        comm = await _map(dispatcher)
        assert (await comm.connect(timeout=TIMEOUT))[0]
        assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        loop = asyncio.get_running_loop()
        seen: list[tuple[float, list[float]]] = []
        for second in range(1, 4):
            await layer.group_send(
                FLEET_GROUP, {"type": "fleet.positions", "positions": [_position(mission.pk, 30.0 + second, second)]}
            )
            frame = await _next(comm, "positions")
            seen.append((loop.time(), [v["lat"] for v in frame["vehicles"]]))
        await comm.disconnect()
    # Each position is sent once it arrives, but frames are never closer than the interval (a lower bound only).
    assert [lats for _, lats in seen] == [[31.0], [32.0], [33.0]]
    assert all(later - earlier >= 0.35 for (earlier, _), (later, _) in itertools.pairwise(seen))


def test_large_messages_go_out_in_parts_under_the_size_daphne_sends() -> None:
    rows = [{"mission_id": i, "vehicle_id": f"TRK-{i:04d}", "lat": 30.0, "lon": -96.0} for i in range(200)]
    whole = consumers.encoded_parts({"type": "snapshot", "server_time": "t"}, "vehicles", rows)
    assert len(whole) == 1
    parts = consumers.encoded_parts(
        {"type": "snapshot", "server_time": "t"}, "vehicles", rows, rest={"type": "snapshot_more"}, limit=2000
    )
    decoded = [json.loads(text) for text in parts]
    assert len(parts) > 1 and all(len(text.encode()) <= 2000 for text in parts)
    assert decoded[0]["type"] == "snapshot" and decoded[0]["server_time"] == "t"
    assert {d["type"] for d in decoded[1:]} == {"snapshot_more"}
    assert [v for d in decoded for v in d["vehicles"]] == rows


async def test_a_fleet_snapshot_over_the_message_size_arrives_in_parts(
    dispatcher: User, carrier_a: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    missions = [await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(6)]
    for mission in missions:
        await sync_to_async(ingest_events)(
            carrier=carrier_a, events=[make_event(mission, ts=seconds_ago(2))], source="t"
        )
    monkeypatch.setattr(consumers, "MESSAGE_BYTES", 1500)  # a truck is a few hundred bytes
    comm = await _map(dispatcher)
    assert (await comm.connect(timeout=TIMEOUT))[0]
    first = await comm.receive_json_from(timeout=TIMEOUT)
    assert first["type"] == "snapshot"
    seen = [v["mission_id"] for v in first["vehicles"]]
    while len(seen) < len(missions):
        more = await comm.receive_json_from(timeout=TIMEOUT)
        assert more["type"] == "snapshot_more"
        seen += [v["mission_id"] for v in more["vehicles"]]
    assert sorted(seen) == sorted(m.pk for m in missions) and len(first["vehicles"]) < len(missions)
    await comm.disconnect()


async def test_a_position_broadcast_while_the_snapshot_is_read_follows_the_snapshot(
    dispatcher: User, carrier_a: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    mission: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    layer = get_channel_layer()
    watcher = await _map(dispatcher)  # already live: the shared frame goes out while the second map reads
    await watcher.connect(timeout=TIMEOUT)
    assert (await watcher.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"

    def slow_fleet_state(**kwargs: Any) -> list[dict[str, Any]]:
        message = {"type": "fleet.positions", "positions": [_position(mission.pk, 31.5, 3)]}
        async_to_sync(layer.group_send)(FLEET_GROUP, message)
        async_to_sync(_next)(watcher, "positions")  # that frame has been sent while this read runs
        return fleet_state(**kwargs)

    monkeypatch.setattr(consumers, "fleet_state", slow_fleet_state)
    late = await _map(dispatcher)
    await late.connect(timeout=TIMEOUT)
    # Never a frame before the snapshot (the browser would drop it when the snapshot replaces its fleet).
    assert (await late.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    frame = await late.receive_json_from(timeout=TIMEOUT)
    assert frame["type"] == "positions"
    assert [(v["mission_id"], v["lat"]) for v in frame["vehicles"]] == [(mission.pk, 31.5)]
    await late.disconnect()
    await watcher.disconnect()


class FlakyLayer(InMemoryChannelLayer):  # type: ignore[misc]
    """An in-process layer whose next receive fails once, as a Redis connection that drops."""

    fail_next_receive = False

    async def receive(self, channel: str) -> dict[str, Any]:
        if self.fail_next_receive:
            FlakyLayer.fail_next_receive = False
            raise ConnectionError("connection reset")
        message: dict[str, Any] = await super().receive(channel)
        return message


async def test_live_map_resends_the_fleet_once_the_channel_layer_is_back(
    dispatcher: User, carrier_a: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    mission: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    monkeypatch.setattr(consumers, "RECEIVE_RETRY_SECONDS", 0.01)
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": f"{__name__}.FlakyLayer"}}):
        layer = get_channel_layer()
        comm = await _map(dispatcher)
        await comm.connect(timeout=TIMEOUT)
        assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        FlakyLayer.fail_next_receive = True  # the receive after this batch fails
        await layer.group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": [_position(mission.pk, 30, 4)]})
        # Positions may have been lost while the layer was away: the map gets the whole fleet again.
        assert (await _next(comm, "snapshot"))["type"] == "snapshot"
        await comm.disconnect()


async def test_live_map_keeps_its_fleet_subscription_past_the_group_expiry(
    dispatcher: User, carrier_a: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    mission: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
    monkeypatch.setattr(consumers, "GROUP_RENEW_SECONDS", 0.2)
    # Channel layers drop a group member this long after it joined (a day by default).
    short_expiry = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"group_expiry": 1}}}
    with override_settings(CHANNEL_LAYERS=short_expiry):
        layer = get_channel_layer()
        comm = await _map(dispatcher)
        await comm.connect(timeout=TIMEOUT)
        assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        await asyncio.sleep(2.5)  # past the expiry of the first membership
        await layer.group_send(FLEET_GROUP, {"type": "fleet.positions", "positions": [_position(mission.pk, 30, 5)]})
        assert [v["mission_id"] for v in (await _next(comm, "positions"))["vehicles"]] == [mission.pk]
        await comm.disconnect()


async def test_live_map_over_redis_stays_open_while_idle_and_shows_ingested_positions(
    dispatcher: User, carrier_a: Carrier
) -> None:
    require_service("Redis (REDIS_URL)", bool(REDIS_URL))
    from django.conf import settings

    with override_settings(CHANNEL_LAYERS=_configured_channel_layers):
        assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
        mission: Mission = await sync_to_async(MissionFactory)(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
        comm = await _map(dispatcher)
        await comm.connect(timeout=TIMEOUT)
        assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        # Longer than redis-py's 5 s default read timeout: the socket must not be torn down meanwhile.
        assert await comm.receive_nothing(timeout=6)
        event = make_event(mission, ts=seconds_ago(1), position={"lat": 31.25, "lon": -96.0, "speed_kph": 70.0})
        await sync_to_async(ingest_events)(carrier=carrier_a, events=[event], source="t")
        frame = await _next(comm, "positions")
        assert [(v["mission_id"], v["lat"]) for v in frame["vehicles"]] == [(mission.pk, 31.25)]
        await comm.disconnect()


def _channel_layers_from_settings() -> dict[str, Any]:
    from django.conf import settings

    layers: dict[str, Any] = settings.CHANNEL_LAYERS
    return layers


# What tms_console.settings configures from the environment, before the autouse fixture replaces it.
_configured_channel_layers = _channel_layers_from_settings()
