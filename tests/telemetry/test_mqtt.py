"""MQTT ingest against the real Mosquitto: good events stored, bad payloads counted, the stream goes on."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from missions.models import Carrier, Mission
from missions.models.telemetry import TelemetryWindowEvent
from missions.telemetry.mqtt_bridge import MqttBridge, broker_config
from tests.conftest import require_service
from tests.telemetry.conftest import make_event, seconds_ago
from tms_console.unstorable import unstorable_char

pytestmark = [pytest.mark.django_db, pytest.mark.services]
TIMEOUT = 15  # an upper bound for messages to arrive, never asserted as a timing
MQTT_URL = os.environ.get("MQTT_URL", "mqtt://127.0.0.1:1883")


def broker_up() -> bool:
    config = broker_config(MQTT_URL)
    try:
        with socket.create_connection((config.host, config.port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def prefix() -> str:
    return f"tms-test/{uuid.uuid4().hex[:10]}"  # other test runs share the broker


@pytest.fixture
def bridge(prefix: str) -> Iterator[MqttBridge]:
    require_service("Mosquitto", broker_up())
    bridge = MqttBridge(broker_config(MQTT_URL), topic_prefix=prefix, flush_seconds=0.1)
    bridge.start()
    assert bridge.subscribed.wait(TIMEOUT)
    yield bridge
    bridge.stop()


@pytest.fixture
def publisher() -> Iterator[mqtt.Client]:
    config = broker_config(MQTT_URL)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tms-test-pub-{uuid.uuid4().hex[:8]}")
    if config.username:
        client.username_pw_set(config.username, config.password)
    client.connect(config.host, config.port)
    client.loop_start()
    yield client
    client.loop_stop()
    client.disconnect()


def pump_until(bridge: MqttBridge, received: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while bridge.stats["received"] < received and time.monotonic() < deadline:
        bridge.pump()


def test_mqtt_ingest_stores_events_and_counts_malformed_payloads(
    bridge: MqttBridge, publisher: mqtt.Client, prefix: str, carrier_a: Carrier, mission: Mission
) -> None:
    assert mission.vehicle is not None
    topic = f"{prefix}/{carrier_a.slug}/{mission.vehicle.external_id}"
    one = make_event(mission, ts=seconds_ago(3))
    del one["vehicle_id"]  # taken from the topic
    two = make_event(mission, ts=seconds_ago(2))
    three = make_event(mission, ts=seconds_ago(1))
    publishes = [
        (topic, json.dumps(one)),
        (topic, b"\xff\xfe not json"),
        (f"{prefix}/no-such-carrier/{mission.vehicle.external_id}", json.dumps(two)),
        (f"{prefix}/{carrier_a.slug}", json.dumps(two)),  # not a vehicle topic: not even subscribed
        (topic, json.dumps({"events": [two, make_event(mission, position={"lat": 123, "lon": 0})]})),
        (f"{prefix}/{carrier_a.slug}/OTHER-TRUCK", json.dumps(three)),
        (topic, json.dumps([three, three])),
    ]
    for name, payload in publishes:
        publisher.publish(name, payload, qos=1).wait_for_publish(TIMEOUT)
    pump_until(bridge, received=6)

    assert bridge.stats["received"] == 6
    assert bridge.stats["accepted"] == 3
    assert bridge.stats["malformed_json"] == 1
    assert bridge.stats["unknown_carrier"] == 1
    assert bridge.stats["topic_mismatch"] == 1
    assert bridge.stats["rejected"] == 1
    assert bridge.stats["duplicates"] == 1
    stored = set(TelemetryWindowEvent.objects.filter(mission=mission).values_list("event_id", flat=True))
    assert {str(e) for e in stored} == {one["event_id"], two["event_id"], three["event_id"]}


def test_broker_urls_are_parsed_with_tls_and_credentials() -> None:
    plain = broker_config("mqtt://user:p%40ss@broker.local")
    assert (plain.host, plain.port, plain.tls, plain.username, plain.password) == (
        "broker.local",
        1883,
        False,
        "user",
        "p@ss",
    )
    tls = broker_config("mqtts://broker.local", username="u", password="p", ca_file="/etc/ca.pem")
    assert (tls.port, tls.tls, tls.username, tls.ca_file) == (8883, True, "u", "/etc/ca.pem")
    with pytest.raises(ValueError):
        broker_config("http://broker.local")


# --- Settled before acknowledged -------------------------------------------------------------------


class AckRecorder:
    """Stands in for the paho client: records which messages were acknowledged."""

    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


def deliver(bridge: MqttBridge, topic: str, payload: Any, mid: int) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    bridge._on_message(None, None, SimpleNamespace(topic=topic, payload=body, mid=mid, qos=1))


@pytest.fixture
def offline_bridge() -> Iterator[MqttBridge]:
    bridge = MqttBridge(broker_config("mqtt://127.0.0.1:1"), topic_prefix="tms/telemetry", flush_seconds=0.01)
    bridge._client = AckRecorder()
    yield bridge
    bridge._client = None


def stored_ids() -> set[str]:
    return {str(e) for e in TelemetryWindowEvent.objects.values_list("event_id", flat=True)}


def test_a_message_that_cannot_be_stored_is_not_acknowledged_and_does_not_hold_back_the_others(
    offline_bridge: MqttBridge, carrier_a: Carrier, mission: Mission, monkeypatch: pytest.MonkeyPatch
) -> None:
    from missions.telemetry import mqtt_bridge

    assert mission.vehicle is not None
    topic = f"tms/telemetry/{carrier_a.slug}/{mission.vehicle.external_id}"
    clean = make_event(mission, ts=seconds_ago(3))
    poison = make_event(mission, ts=seconds_ago(2))
    later = make_event(mission, ts=seconds_ago(1))
    failing = {poison["event_id"]}
    real_ingest = mqtt_bridge.ingest_events

    def ingest(**kwargs: Any) -> Any:
        if failing & {e.get("event_id") for e in kwargs["events"] if isinstance(e, dict)}:
            raise RuntimeError("the database refused this batch")
        return real_ingest(**kwargs)

    monkeypatch.setattr(mqtt_bridge, "ingest_events", ingest)
    monkeypatch.setattr(mqtt_bridge, "RETRY_FIRST_SECONDS", 0.0)
    monkeypatch.setattr(mqtt_bridge.time, "sleep", lambda seconds: None)
    for mid, event in ((1, clean), (2, poison), (3, later)):  # one flush window
        deliver(offline_bridge, topic, event, mid)
    offline_bridge.pump(wait=False)

    recorder = offline_bridge._client
    assert isinstance(recorder, AckRecorder)
    assert sorted(recorder.acked) == [1, 3]  # settled; the poisoned message is not acknowledged
    assert stored_ids() == {clean["event_id"], later["event_id"]}
    assert offline_bridge.stats["ingest_failed"] == 1

    failing.clear()  # the database is back: the message is retried and only then acknowledged
    offline_bridge.pump(wait=False)
    assert sorted(recorder.acked) == [1, 2, 3]
    assert stored_ids() == {clean["event_id"], poison["event_id"], later["event_id"]}


def test_unstorable_strings_refuse_their_event_or_message_with_one_log_line_per_message(
    offline_bridge: MqttBridge, carrier_a: Carrier, mission: Mission, caplog: pytest.LogCaptureFixture
) -> None:
    assert mission.vehicle is not None
    topic = f"tms/telemetry/{carrier_a.slug}/{mission.vehicle.external_id}"
    good = [make_event(mission, ts=seconds_ago(n)) for n in (4, 3, 2)]
    escaped_nul = dict(make_event(mission), vehicle_id=mission.vehicle.external_id, health={"ecu_errors": ["P\x00"]})
    raw_surrogate = json.dumps([good[1], make_event(mission, mission_state="en_route\ud800")], ensure_ascii=False)
    many_bad = {
        "events": [
            make_event(mission, mission_state="\ud800"),
            dict(make_event(mission), vehicle_id="OTHER-TRUCK"),
            make_event(mission, health={"ecu_errors": ["\x00"]}),
        ]
    }
    caplog.set_level(logging.INFO, logger="missions.telemetry.mqtt_bridge")
    deliver(offline_bridge, topic, {"events": [good[0], escaped_nul]}, 1)
    deliver(offline_bridge, topic, raw_surrogate.encode("utf-8", "surrogatepass"), 2)
    deliver(offline_bridge, topic, many_bad, 3)
    deliver(offline_bridge, topic, {"events": [good[2]], "sender\ud800": "gw-1"}, 4)
    offline_bridge.pump(wait=False)

    recorder = offline_bridge._client
    assert isinstance(recorder, AckRecorder)
    assert sorted(recorder.acked) == [1, 2, 3, 4]  # every message settled: stored or refused
    assert stored_ids() == {good[0]["event_id"], good[1]["event_id"]}
    assert offline_bridge.stats["accepted"] == 2
    assert offline_bridge.stats["unstorable"] == 1  # message 4, refused as a whole
    lines = [r for r in caplog.records if r.name == "missions.telemetry.mqtt_bridge"]
    # One line per message with something refused (never one per event): three partly, one whole.
    assert sorted(r.getMessage() for r in lines) == ["MQTT events refused"] * 3 + ["MQTT message refused"]
    assert sorted(r.__dict__.get("refused", 0) for r in lines if r.getMessage() == "MQTT events refused") == [1, 1, 3]
    for record in lines:
        assert unstorable_char(str(record.__dict__)) is None  # log lines are storable too


def test_a_megabyte_of_integers_is_one_refused_message_and_one_log_line(
    offline_bridge: MqttBridge, carrier_a: Carrier, mission: Mission, caplog: pytest.LogCaptureFixture
) -> None:
    assert mission.vehicle is not None
    topic = f"tms/telemetry/{carrier_a.slug}/{mission.vehicle.external_id}"
    payload = json.dumps(list(range(500_000)), separators=(",", ":")).encode()
    assert len(payload) > 1_000_000
    caplog.set_level(logging.INFO, logger="missions.telemetry.mqtt_bridge")
    deliver(offline_bridge, topic, payload, 1)
    deliver(offline_bridge, topic, {"events": [make_event(mission, ts=seconds_ago(1))]}, 2)
    offline_bridge.pump(wait=False)

    recorder = offline_bridge._client
    assert isinstance(recorder, AckRecorder)
    assert sorted(recorder.acked) == [1, 2]
    assert len(stored_ids()) == 1  # the clean message next to it is stored
    lines = [r for r in caplog.records if r.name == "missions.telemetry.mqtt_bridge"]
    assert len(lines) == 1, [r.getMessage() for r in lines]  # not one per integer


def test_an_unacknowledged_message_is_redelivered_to_a_persistent_session(
    prefix: str, publisher: mqtt.Client, carrier_a: Carrier, mission: Mission, monkeypatch: pytest.MonkeyPatch
) -> None:
    from missions.telemetry import mqtt_bridge

    require_service("Mosquitto", broker_up())
    assert mission.vehicle is not None
    topic = f"{prefix}/{carrier_a.slug}/{mission.vehicle.external_id}"
    client_id = f"tms-test-bridge-{uuid.uuid4().hex[:8]}"
    clean, poison = make_event(mission, ts=seconds_ago(2)), make_event(mission, ts=seconds_ago(1))
    real_ingest = mqtt_bridge.ingest_events

    def failing(**kwargs: Any) -> Any:
        if any(isinstance(e, dict) and e.get("event_id") == poison["event_id"] for e in kwargs["events"]):
            raise RuntimeError("the database refused this batch")
        return real_ingest(**kwargs)

    monkeypatch.setattr(mqtt_bridge.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(mqtt_bridge, "ingest_events", failing)
    first = MqttBridge(
        broker_config(MQTT_URL), topic_prefix=prefix, flush_seconds=0.1, client_id=client_id, persistent_session=True
    )
    first.start()
    try:
        assert first.subscribed.wait(TIMEOUT)
        for event in (clean, poison):
            publisher.publish(topic, json.dumps(event), qos=1).wait_for_publish(TIMEOUT)
        pump_until(first, received=2)
    finally:
        first.stop()  # gone without acknowledging the message it could not store
    assert stored_ids() == {clean["event_id"]}

    monkeypatch.setattr(mqtt_bridge, "ingest_events", real_ingest)
    second = MqttBridge(
        broker_config(MQTT_URL), topic_prefix=prefix, flush_seconds=0.1, client_id=client_id, persistent_session=True
    )
    second.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while poison["event_id"] not in stored_ids() and time.monotonic() < deadline:
            second.pump()
    finally:
        second.stop()
        # Drop the session from the shared broker.
        cleaner = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        cleaner.connect(broker_config(MQTT_URL).host, broker_config(MQTT_URL).port)
        cleaner.disconnect()
    assert stored_ids() == {clean["event_id"], poison["event_id"]}


def test_while_the_store_is_down_nothing_is_acknowledged_and_everything_is_stored_once_it_is_back(
    offline_bridge: MqttBridge, carrier_a: Carrier, mission: Mission, monkeypatch: pytest.MonkeyPatch
) -> None:
    from missions.telemetry import mqtt_bridge

    assert mission.vehicle is not None
    topic = f"tms/telemetry/{carrier_a.slug}/{mission.vehicle.external_id}"
    events = [make_event(mission, ts=seconds_ago(10 - n)) for n in range(6)]
    real_ingest = mqtt_bridge.ingest_events
    calls: list[int] = []
    down = [True]

    def ingest(**kwargs: Any) -> Any:
        calls.append(len(kwargs["events"]))
        if down[0]:
            raise RuntimeError("connection refused")
        return real_ingest(**kwargs)

    monkeypatch.setattr(mqtt_bridge, "ingest_events", ingest)
    monkeypatch.setattr(mqtt_bridge, "RETRY_FIRST_SECONDS", 0.0)
    monkeypatch.setattr(mqtt_bridge.time, "sleep", lambda seconds: None)
    for mid, event in enumerate(events, start=1):
        deliver(offline_bridge, topic, event, mid)
    offline_bridge.pump(wait=False)

    recorder = offline_bridge._client
    assert isinstance(recorder, AckRecorder)
    assert recorder.acked == []
    assert offline_bridge.stats["ingest_failed"] == 6
    # The window three times, then one message at a time until three failed in a row: the other
    # three wait for their retry untried.
    assert calls == [6, 6, 6, 1, 1, 1]

    down[0] = False
    offline_bridge.pump(wait=False)
    assert sorted(recorder.acked) == [1, 2, 3, 4, 5, 6]
    assert stored_ids() == {e["event_id"] for e in events}


# --- Dead letters ------------------------------------------------------------------------------------


def test_a_message_refused_whole_is_kept_as_a_dead_letter_then_acknowledged(
    offline_bridge: MqttBridge, carrier_a: Carrier, mission: Mission
) -> None:
    from missions.models import DeadLetter

    deliver(offline_bridge, "tms/telemetry/no-such-carrier/V-1", {"x": 1}, 11)
    deliver(offline_bridge, f"tms/telemetry/{carrier_a.slug}/V-1", b"\xff not json", 12)
    offline_bridge.pump(wait=False)
    recorder = offline_bridge._client
    assert isinstance(recorder, AckRecorder)
    assert sorted(recorder.acked) == [11, 12]
    letters = {d.kind: d for d in DeadLetter.objects.all()}
    assert set(letters) == {"unknown_carrier", "malformed_json"}
    assert bytes(letters["malformed_json"].payload) == b"\xff not json"
    assert letters["malformed_json"].carrier == carrier_a
    assert offline_bridge.stats["dead_lettered"] == 2


def test_a_dead_letter_that_cannot_be_recorded_is_not_acknowledged(
    offline_bridge: MqttBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    from missions.telemetry import mqtt_bridge

    def down(**kwargs: Any) -> Any:
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(mqtt_bridge, "dead_letter_record", down)
    deliver(offline_bridge, "tms/telemetry/no-such-carrier/V-1", {"x": 1}, 21)
    offline_bridge.pump(wait=False)
    recorder = offline_bridge._client
    assert isinstance(recorder, AckRecorder)
    assert recorder.acked == []  # the broker keeps it for a redelivery


def test_a_message_that_never_stores_while_others_do_becomes_a_dead_letter(
    offline_bridge: MqttBridge, carrier_a: Carrier, mission: Mission, monkeypatch: pytest.MonkeyPatch
) -> None:
    from missions.models import DeadLetter
    from missions.telemetry import mqtt_bridge

    assert mission.vehicle is not None
    topic = f"tms/telemetry/{carrier_a.slug}/{mission.vehicle.external_id}"
    poison = make_event(mission, ts=seconds_ago(2))
    real_ingest = mqtt_bridge.ingest_events

    def ingest(**kwargs: Any) -> Any:
        if poison["event_id"] in {e.get("event_id") for e in kwargs["events"] if isinstance(e, dict)}:
            raise RuntimeError("this event breaks the store")
        return real_ingest(**kwargs)

    monkeypatch.setattr(mqtt_bridge, "ingest_events", ingest)
    monkeypatch.setattr(mqtt_bridge, "RETRY_FIRST_SECONDS", 0.0)
    monkeypatch.setattr(mqtt_bridge.time, "sleep", lambda seconds: None)
    deliver(offline_bridge, topic, poison, 31)
    for _ in range(mqtt_bridge.POISON_ATTEMPTS + 1):
        offline_bridge.pump(wait=False)
    recorder = offline_bridge._client
    assert isinstance(recorder, AckRecorder)
    assert recorder.acked == [31]
    letter = DeadLetter.objects.get(kind="not_storable")
    assert letter.carrier == carrier_a and "attempts" in letter.reason


def test_bridge_counts_and_open_dead_letters_on_metrics(offline_bridge: MqttBridge) -> None:
    from django.test import Client

    deliver(offline_bridge, "tms/telemetry/no-such-carrier/V-1", {"x": 1}, 41)
    offline_bridge.pump(wait=False)
    offline_bridge.heartbeat()
    text = Client().get("/metrics").content.decode()
    assert 'tms_dead_letters_open{source="mqtt"} 1.0' in text
    assert 'tms_mqtt_bridge_messages{outcome="dead_lettered"} 1.0' in text
    assert 'tms_dependency_up{dependency="mqtt-bridge"} 1.0' in text


def test_on_call_inspects_and_discards_a_dead_letter(oncall: Any, readonly: Any) -> None:
    from missions.models import AuditEvent, DeadLetter, DeadLetterStatus
    from missions.telemetry.dead_letters import dead_letter_record
    from tests.conftest import verified_client

    letter = dead_letter_record(
        source="mqtt", topic="tms/telemetry/x/V-1", payload=b'{"a": "\\u0000"}', kind="unstorable", reason="a: U+0000"
    )
    viewer = verified_client(readonly)
    page = viewer.get("/telemetry/dead-letters/")
    assert page.status_code == 200 and b"tms/telemetry/x/V-1" in page.content
    detail = viewer.get(f"/telemetry/dead-letters/{letter.pk}/")
    assert detail.status_code == 200 and b"Discard" not in detail.content  # a viewer cannot discard
    assert viewer.post(f"/telemetry/dead-letters/{letter.pk}/discard/", {"note": "x"}).status_code == 403

    responder = verified_client(oncall)
    refused = responder.post(f"/telemetry/dead-letters/{letter.pk}/discard/", {"note": " "}, follow=True)
    assert b"Say why" in refused.content
    responder.post(f"/telemetry/dead-letters/{letter.pk}/discard/", {"note": "vendor firmware bug, ticket 42"})
    letter.refresh_from_db()
    assert letter.status == DeadLetterStatus.DISCARDED and letter.discarded_by == "oncall"
    assert AuditEvent.objects.filter(subject_type="dead_letter", action="telemetry.dead_letter_discarded").exists()
    assert b"No open dead letters" in responder.get("/telemetry/dead-letters/").content
    assert DeadLetter.objects.count() == 1


def test_a_stored_batch_is_one_span_linked_to_its_publishers_and_its_missions_traces(
    spans: Any, bridge: MqttBridge, prefix: str, carrier_a: Carrier, mission: Mission
) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    assert mission.vehicle is not None
    mission_trace, publisher_trace = "ab" * 16, "12" * 16
    Mission.objects.filter(pk=mission.pk).update(traceparent=f"00-{mission_trace}-{'cd' * 8}-01")
    config = broker_config(MQTT_URL)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"tms-test-pub5-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.connect(config.host, config.port)
    client.loop_start()
    try:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.UserProperty = [("traceparent", f"00-{publisher_trace}-{'34' * 8}-01")]
        topic = f"{prefix}/{carrier_a.slug}/{mission.vehicle.external_id}"
        for seconds in (3, 2):
            event = make_event(mission, ts=seconds_ago(seconds))
            client.publish(topic, json.dumps(event), qos=1, properties=properties).wait_for_publish(TIMEOUT)
    finally:
        client.loop_stop()
        client.disconnect()
    pump_until(bridge, 2)

    assert TelemetryWindowEvent.objects.filter(mission=mission).count() == 2
    batches = [span for span in spans.get_finished_spans() if span.name == "mqtt ingest"]
    assert batches, "no span for the stored batch"
    linked = {format(link.context.trace_id, "032x") for span in batches for link in span.links}
    assert {mission_trace, publisher_trace} <= linked
    # Never one trace for the stream: each batch is a root of its own.
    assert all(span.parent is None for span in batches)
