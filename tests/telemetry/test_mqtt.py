"""MQTT ingest against the real Mosquitto: good events stored, bad payloads counted, the stream goes on."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from missions.models import Carrier, Mission
from missions.models.telemetry import TelemetryWindowEvent
from missions.telemetry.mqtt_bridge import MqttBridge, broker_config
from tests.conftest import require_service
from tests.telemetry.conftest import make_event, seconds_ago

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
