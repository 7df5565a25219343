"""Chaos: a network partition between the MQTT bridge and its broker (Linux network namespaces).

The broker is a mosquitto of the test's own inside a network namespace, with
the vehicle publishing next to it (``mosquitto_pub`` in the same namespace);
the product's MQTT bridge (``MqttBridge``, as ``manage.py mqtt_ingest`` runs
it, with a persistent session) is in this process, on the other end of a veth
pair. The link goes down: packets are lost, nothing is closed. The broker
caps keep-alive at 10 s (``max_keepalive``, MQTT 5 Server Keep Alive, which
the bridge's client obeys), so both ends give the connection up within about
15 s, as they would after about 45 s with the bridge's own 30 s. The link comes
back: the bridge must reconnect by itself and store every message the broker
accepted, before, during and after the partition, exactly once.

Skipped (with the reason) without root, iproute2 or mosquitto.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from missions.models import Carrier, Mission
from missions.telemetry.mqtt_bridge import MqttBridge, broker_config
from tests.chaos.netns import Partition, partition_or_skip
from tests.faults.dependencies import MOSQUITTO, en_route_mission, stored_ids, telemetry_event

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

PREFIX = "tms/telemetry"
PORT = 1883  # the namespace has its own ports: no clash with the machine's broker
PER_PHASE = 5
PATIENT_SECONDS = 30.0  # an upper bound for something that must happen, never asserted as a timing
MOSQUITTO_PUB = shutil.which("mosquitto_pub")


class Broker:
    """mosquitto inside the partition's namespace, logging connections to a file the test reads."""

    def __init__(self, partition: Partition, directory: Path) -> None:
        assert MOSQUITTO is not None
        self.partition = partition
        self.log = directory / "mosquitto.log"
        config = directory / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    f"listener {PORT} 0.0.0.0",
                    "allow_anonymous true",
                    "max_keepalive 10",  # mosquitto allows no less
                    "max_queued_messages 10000",
                    *(["user root"] if os.geteuid() == 0 else []),
                    f"log_dest file {self.log}",
                    "log_type all",
                    "",
                ]
            )
        )
        self.errors = directory / "mosquitto.stderr"
        with self.errors.open("wb") as errors:
            self.process = subprocess.Popen(
                partition.inside([MOSQUITTO, "-c", str(config)]), stdout=subprocess.DEVNULL, stderr=errors
            )

    def running(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"mosquitto exited: {self.errors.read_text(errors='replace')}")
        return True

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connections_of(self, client_id: str) -> int:
        return sum(1 for line in self.log_text().splitlines() if "New client connected" in line and client_id in line)

    def publish_inside(self, topic: str, payloads: list[dict[str, Any]]) -> None:
        """Publish QoS 1 from the broker's side of the partition; returns once the broker has them."""
        assert MOSQUITTO_PUB is not None
        lines = "".join(json.dumps(p) + "\n" for p in payloads)
        done = subprocess.run(
            self.partition.inside([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(PORT), "-q", "1", "-t", topic, "-l"]),
            input=lines,
            capture_output=True,
            text=True,
            timeout=PATIENT_SECONDS,
        )
        assert done.returncode == 0, done.stderr

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def partition() -> Iterator[Partition]:
    if MOSQUITTO is None or MOSQUITTO_PUB is None:
        pytest.skip("mosquitto and mosquitto_pub are needed for the partition test")
    made = partition_or_skip()
    yield made
    made.remove()


@pytest.fixture
def broker(partition: Partition, tmp_path: Path) -> Iterator[Broker]:
    server = Broker(partition, tmp_path)
    try:
        _wait_for("the broker in the namespace", lambda: server.running() and _reachable(partition.far_address))
        yield server
    finally:
        server.stop()


def _reachable(host: str) -> bool:
    try:
        with socket.create_connection((host, PORT), timeout=1):
            return True
    except OSError:
        return False


def _wait_for(what: str, condition: Callable[[], bool], *, pump: MqttBridge | None = None) -> None:
    deadline = time.monotonic() + PATIENT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {PATIENT_SECONDS} s")
        if pump is not None:
            pump.pump()  # the bridge's own loop: collect a batch, store it, acknowledge it
        else:
            time.sleep(0.05)


def test_partition_the_bridge_reconnects_and_stores_every_message_once(
    partition: Partition, broker: Broker, carrier_a: Carrier
) -> None:
    mission: Mission = en_route_mission(carrier_a)
    assert mission.vehicle is not None
    topic = f"{PREFIX}/{carrier_a.slug}/{mission.vehicle.external_id}"
    client_id = f"chaos-bridge-{uuid.uuid4().hex[:8]}"
    bridge = MqttBridge(
        broker_config(f"mqtt://{partition.far_address}:{PORT}"),
        topic_prefix=PREFIX,
        flush_seconds=0.1,
        client_id=client_id,
        persistent_session=True,
    )
    bridge.start()
    try:
        assert bridge.subscribed.wait(PATIENT_SECONDS)
        sent: list[str] = []

        def publish(n: int) -> None:
            events = [telemetry_event(mission) for _ in range(n)]
            broker.publish_inside(topic, events)
            sent.extend(e["event_id"] for e in events)

        publish(PER_PHASE)
        _wait_for("the first messages to be stored", lambda: len(stored_ids(mission)) == len(sent), pump=bridge)

        partition.cut()
        assert not _reachable(partition.far_address)  # the partition is real: nothing gets across
        publish(PER_PHASE)  # accepted by the broker, held for the bridge's session
        _wait_for(
            "the broker to give the bridge's connection up",
            lambda: f"Client {client_id} has exceeded timeout" in broker.log_text(),
            pump=bridge,
        )
        assert len(stored_ids(mission)) == PER_PHASE  # nothing crossed the partition

        partition.restore()
        publish(PER_PHASE)
        _wait_for("the bridge to reconnect by itself", lambda: broker.connections_of(client_id) >= 2, pump=bridge)
        _wait_for("every message to be stored", lambda: len(stored_ids(mission)) >= len(sent), pump=bridge)
        for _ in range(5):
            bridge.pump()  # a redelivered duplicate would show up here

        stored = stored_ids(mission)
        assert sorted(stored) == sorted(sent)  # each accepted message stored, once
        assert bridge.stats["accepted"] == len(sent)
    except BaseException:
        print(broker.log_text()[-4000:])
        raise
    finally:
        bridge.stop()
