"""Vehicle SVIDs on MQTT: a Mosquitto of the test's own with TLS client certificates required.

The broker verifies each connection's certificate against the carriers' bundles
(``require_certificate``); the bridge, told nothing about who published a message,
checks the SVID the message carries and the signature over its payload made with
the SVID's key (docs/identity.md, "MQTT").
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from missions.identity.svid import fingerprint_sha256
from missions.models import DeadLetter, TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.telemetry.mqtt_bridge import MqttBridge, broker_config
from tests.certificates import LOOPBACK_SAN, issue_certificate, write_pem
from tests.conftest import require_service
from tests.identity.conftest import BAD_SVIDS, Pki, refused_count
from tests.partner.test_isolation import telemetry_event
from tests.servers import free_port
from tests.svid import Issued, spiffe_ca, vehicle_svid

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 15  # an upper bound for messages to arrive, never asserted as a timing
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
PREFIX = "tms/telemetry"


@dataclass
class Broker:
    port: int
    server_ca: str  # what clients trust for the broker's own certificate
    directory: Path

    def client_files(self, name: str, issued: Issued) -> tuple[str, str]:
        cert, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        cert.write_text(issued.pem)
        key.write_bytes(issued.key_pem())
        return str(cert), str(key)


@pytest.fixture
def broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    require_service("mosquitto", MOSQUITTO is not None)
    assert MOSQUITTO is not None
    server_ca, server_ca_key = issue_certificate("Broker CA", ca=True)
    write_pem(tmp_path / "server-ca", server_ca)
    server, server_key = issue_certificate("127.0.0.1", server_ca_key, server_ca.subject, san=LOOPBACK_SAN)
    write_pem(tmp_path / "server", server, server_key)
    console_ca = spiffe_ca("tms.example")
    (tmp_path / "console-ca.pem").write_text(console_ca.pem)
    # The union of the carriers' bundles and the console's own CA, as a deployment renders it.
    (tmp_path / "clients.pem").write_text(pki.ca_a.pem + pki.ca_a_old.pem + pki.ca_b.pem + console_ca.pem)
    port = free_port()
    user = "user root\n" if os.geteuid() == 0 else ""
    (tmp_path / "mosquitto.conf").write_text(
        f"{user}persistence false\nlog_dest stdout\n"
        f"listener {port} 127.0.0.1\nprotocol mqtt\n"
        f"cafile {tmp_path / 'clients.pem'}\ncertfile {tmp_path / 'server.crt'}\nkeyfile {tmp_path / 'server.key'}\n"
        "require_certificate true\nuse_subject_as_username true\nallow_anonymous false\n"
    )
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(tmp_path / "mosquitto.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"mosquitto exited: {process.stdout.read().decode() if process.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("mosquitto did not listen in time")
            time.sleep(0.05)
    broker = Broker(port=port, server_ca=str(tmp_path / "server-ca.crt"), directory=tmp_path)
    # The bridge's own SVID: spiffe://tms.example/ns/tms/sa/mqtt-bridge (docs/identity.md).
    broker.bridge_svid = vehicle_svid(  # type: ignore[attr-defined]
        console_ca, "tms.example", "", uris=["spiffe://tms.example/ns/tms/sa/mqtt-bridge"]
    )
    try:
        yield broker
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def bridge(broker: Broker) -> Iterator[MqttBridge]:
    cert, key = broker.client_files("bridge", broker.bridge_svid)  # type: ignore[attr-defined]
    config = broker_config(
        f"mqtts://127.0.0.1:{broker.port}", ca_file=broker.server_ca, client_cert=cert, client_key=key
    )
    bridge = MqttBridge(config, topic_prefix=PREFIX, flush_seconds=0.05)
    bridge.start()
    assert bridge.subscribed.wait(TIMEOUT), "the bridge did not connect over TLS with its certificate"
    yield bridge
    bridge.stop()


def _vehicle_client(broker: Broker, svid: Issued) -> mqtt.Client:
    cert, key = broker.client_files(f"vehicle-{uuid.uuid4().hex[:6]}", svid)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"vehicle-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    client.tls_set(ca_certs=broker.server_ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def _publish(
    client: mqtt.Client, topic: str, payload: bytes, *, svid: Issued | None, signer: Issued | None = None
) -> None:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if svid is not None:
        signature = (signer or svid).key.sign(payload, ec.ECDSA(hashes.SHA256()))
        properties.UserProperty = [
            ("x509-svid", base64.b64encode(svid.der).decode()),
            ("x509-svid-signature", base64.b64encode(signature).decode()),
        ]
    client.publish(topic, payload, qos=1, properties=properties).wait_for_publish(TIMEOUT)


def _pump_until(bridge: MqttBridge, received: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while bridge.stats["received"] < received and time.monotonic() < deadline:
        bridge.pump()


def _topic(pki: Pki) -> str:
    return f"{PREFIX}/{pki.carrier_a.slug}/{pki.vehicle_id}"


def test_a_signed_message_with_a_good_svid_is_stored_with_its_fingerprint(
    pki: Pki, broker: Broker, bridge: MqttBridge
) -> None:
    svid = pki.svid()
    client = _vehicle_client(broker, svid)
    try:
        _publish(client, _topic(pki), json.dumps(telemetry_event(pki.mission)).encode(), svid=svid)
        _pump_until(bridge, 1)
    finally:
        client.loop_stop()
        client.disconnect()
    assert bridge.stats["accepted"] == 1, dict(bridge.stats)
    assert TelemetrySample.objects.get(mission=pki.mission).data["vehicle_cert"] == fingerprint_sha256(svid.certificate)


def test_the_broker_refuses_a_connection_without_a_client_certificate(broker: Broker) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="no-cert", protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=broker.server_ca, cert_reqs=ssl.CERT_REQUIRED)
    accepted = threading.Event()
    client.on_connect = lambda c, u, flags, code, props=None: None if code.is_failure else accepted.set()
    try:
        client.connect("127.0.0.1", broker.port)
    except (ssl.SSLError, OSError):
        return  # refused in the handshake (TLS 1.2)
    # TLS 1.3: the client finishes its handshake first; the broker then drops it without a CONNACK.
    client.loop_start()
    try:
        assert not accepted.wait(3)
    finally:
        client.loop_stop()


@pytest.mark.parametrize("case", [*BAD_SVIDS, "none", "signed by another key", "topic of another vehicle"])
def test_a_refused_message_is_a_dead_letter_naming_the_reason_and_nothing_is_stored(
    pki: Pki, broker: Broker, bridge: MqttBridge, case: str
) -> None:
    good = pki.svid()
    presented: Issued | None
    signer = None
    topic = _topic(pki)
    if case == "none":
        presented, reason = None, "required"
    elif case == "signed by another key":
        presented, signer, reason = good, pki.svid(), "bad-signature"
    elif case == "topic of another vehicle":
        presented, reason = good, "vehicle-mismatch"
        topic = f"{PREFIX}/{pki.carrier_a.slug}/TRK-A9"
    else:
        make, reason = BAD_SVIDS[case]
        presented = make(pki)
    event: dict[str, Any] = telemetry_event(pki.mission)
    if case == "topic of another vehicle":
        del event["vehicle_id"]  # taken from the topic
    before = refused_count(reason, "mqtt")
    # The connection itself is a vehicle of carrier A with a good certificate: the broker lets it in.
    client = _vehicle_client(broker, good)
    try:
        _publish(client, topic, json.dumps(event).encode(), svid=presented, signer=signer)
        _pump_until(bridge, 1)
    finally:
        client.loop_stop()
        client.disconnect()
    letter = DeadLetter.objects.get()
    assert letter.kind == f"svid_{reason}", (letter.kind, letter.reason)
    assert f"({reason})" in letter.reason
    assert refused_count(reason, "mqtt") == before + 1
    assert TelemetryWindowEvent.objects.count() == 0 and TelemetrySample.objects.count() == 0
