"""The MQTT broker killed (SIGKILL) under the running bridge (``manage.py mqtt_ingest``), then started again.

What the README's "Operations: when a dependency fails" promises for the MQTT broker down:

* the bridge stays up and reconnects by itself (no restart);
* every QoS 1 message the broker acknowledged to a vehicle, before, during
  (queued by the vehicle's client, sent when it reconnects) or after the
  outage, is stored exactly once: the bridge's persistent session keeps what
  arrives while it is still reconnecting;
* ``/readyz`` shows ``mqtt`` down, then up (it does not take the web process
  out of rotation), and the bridge's counters on ``/metrics`` move.

The broker is the test's own mosquitto, with persistence saved after every
change (as a production broker's should be for QoS 1); the machine's shared
broker is never touched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from missions.choices import MissionStatus
from missions.models import Carrier, Mission
from tests.factories import MissionFactory, VehicleFactory
from tests.faults.dependencies import (
    OwnServer,
    app_server,
    base_env,
    metric,
    metrics,
    own_mosquitto,
    processes,
    readyz,
    require_postgres,
    stored_ids,
    telemetry_event,
    wait_until,
)

pytestmark = [
    pytest.mark.services,
    pytest.mark.server_process,
    pytest.mark.django_db(transaction=True),
]

PREFIX = "tms/telemetry"
PER_PHASE = 10  # messages published before, during and after the outage


class Vehicle:
    """A vehicle's MQTT client: QoS 1, reconnecting by itself; what it publishes while cut off waits in it.

    ``acked`` holds the message ids the broker answered with PUBACK (paho sends a
    message queued during an outage once it has reconnected).
    """

    def __init__(self, broker: OwnServer, mission: Mission) -> None:
        assert mission.vehicle is not None
        self.topic = f"{PREFIX}/{mission.carrier.slug}/{mission.vehicle.external_id}"
        self.mission = mission
        self.acked: set[int] = set()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"faults-vehicle-{uuid.uuid4().hex[:8]}")
        self.client.on_publish = lambda client, userdata, mid, *rest: self.acked.add(mid)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def publish(self, n: int) -> dict[int, str]:
        """``n`` events, one message each; their message ids and event ids."""
        sent = {}
        for _ in range(n):
            event = telemetry_event(self.mission)
            sent[self.client.publish(self.topic, json.dumps(event), qos=1).mid] = event["event_id"]
        return sent

    def acknowledged(self, sent: dict[int, str]) -> bool:
        return set(sent) <= self.acked

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextmanager
def vehicle_client(broker: OwnServer, mission: Mission) -> Iterator[Vehicle]:
    vehicle = Vehicle(broker, mission)
    try:
        yield vehicle
    finally:
        vehicle.close()


def test_broker_killed_the_bridge_reconnects_and_every_acknowledged_message_is_stored_once(
    tmp_path: Path, carrier_a: Carrier
) -> None:
    require_postgres()
    vehicle = VehicleFactory(carrier=carrier_a)
    mission = MissionFactory(carrier=carrier_a, vehicle=vehicle, status=MissionStatus.EN_ROUTE)
    with own_mosquitto(tmp_path) as broker:
        url = f"mqtt://127.0.0.1:{broker.port}"
        env = base_env(MQTT_URL=url, MQTT_TOPIC_PREFIX=PREFIX)
        with processes(tmp_path, env) as procs, app_server("daphne", tmp_path, MQTT_URL=url) as server:
            try:
                bridge = procs.start(
                    "mqtt-bridge",
                    ["manage.py", "mqtt_ingest", "--client-id", f"faults-bridge-{uuid.uuid4().hex[:8]}"],
                )
                wait_until(
                    lambda: readyz(server)[1]["checks"]["mqtt-bridge"]["state"] == "ok", "the bridge's heartbeat"
                )
                before = metric(metrics(server), "tms_mqtt_bridge_messages", outcome="received") or 0.0
                sent: list[str] = []
                with vehicle_client(broker, mission) as vehicle:
                    first = vehicle.publish(PER_PHASE)
                    wait_until(lambda: vehicle.acknowledged(first), "the broker to acknowledge the first messages")
                    sent += first.values()
                    wait_until(lambda: len(stored_ids(mission)) == len(sent), "the first messages to be stored")
                    status, body, _ = readyz(server)
                    assert status == 200 and body["checks"]["mqtt"]["state"] == "ok", body

                    broker.kill()

                    status, body, _ = readyz(server)
                    assert status == 200, body  # MQTT is reported, it does not take the web process out
                    assert body["status"] == "degraded"
                    assert body["checks"]["mqtt"]["state"] == "down" and body["checks"]["mqtt"]["required"] is False
                    assert metric(metrics(server), "tms_dependency_up", dependency="mqtt") == 0.0
                    during = vehicle.publish(PER_PHASE)  # cut off: queued in the vehicle's client
                    assert not set(during) & vehicle.acked

                    broker.start()  # the same port; its sessions come back from its persistence

                    wait_until(lambda: vehicle.acknowledged(during), "the queued messages to be acknowledged")
                    sent += during.values()
                    last = vehicle.publish(PER_PHASE)
                    wait_until(lambda: vehicle.acknowledged(last), "the broker to acknowledge the last messages")
                    sent += last.values()
                    wait_until(
                        lambda: len(stored_ids(mission)) >= len(sent),
                        "every acknowledged message to be stored (the bridge reconnected by itself)",
                    )
                stored = stored_ids(mission)
                assert sorted(stored) == sorted(sent)  # each acknowledged event stored, once
                assert bridge.poll() is None, "the bridge must reconnect, not exit"
                status, body, _ = readyz(server)
                assert status == 200 and body["checks"]["mqtt"]["state"] == "ok", body
                assert metric(metrics(server), "tms_dependency_up", dependency="mqtt") == 1.0
                # The bridge's counters (from its heartbeat) moved: everything it received is counted.
                wait_until(
                    lambda: (
                        (metric(metrics(server), "tms_mqtt_bridge_messages", outcome="received") or 0.0)
                        >= before + len(sent)
                    ),
                    "the bridge's counters on /metrics",
                )
                page = metrics(server)
                assert metric(page, "tms_mqtt_bridge_messages", outcome="accepted") == len(sent)
                assert (metric(page, "tms_mqtt_bridge_messages", outcome="ingest_failed") or 0.0) == 0.0
            except BaseException:
                print(procs.logs(), broker.log_tail(), server.log_tail())
                raise
