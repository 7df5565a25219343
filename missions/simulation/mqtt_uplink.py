"""``--transport mqtt``: the carriers' telemetry over MQTT to a bridge process of the run's own.

The carriers' answers (tenders, mission statuses, exceptions) still go to the partner server over HTTP
(``transport.PartnerHttp``); their trucks publish each sample, QoS 1, on
``tms-sim/<run>/<carrier_slug>/<vehicle_id>`` of the broker at ``MQTT_URL``, and the product's MQTT bridge
(``manage.py mqtt_ingest``, a separate process on the run's database and clock file) stores them. The
bridge's persistent session is made before the bridge starts, so nothing published while it connects is
lost; it is removed from the broker at the end. The bridge answers no publisher, so after a step's samples
the fleet waits until each of them is stored (its dedupe record is in the window table) before the clock
moves on: the run stays in lockstep, as over HTTP.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

from missions.models import Carrier
from missions.models.telemetry import TelemetryWindowEvent
from missions.simulation.transport import PartnerHttp, TransportError, process_stop
from missions.telemetry.mqtt_config import BrokerConfig, broker_config

STORED_WAIT_SECONDS = 30.0
BRIDGE_FLUSH_MS = 5
SESSION_SECONDS = 24 * 3600  # the pre-made session outlives a bridge that is slow to start, not the run's day


def _client(config: BrokerConfig, client_id: str) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if config.username:
        client.username_pw_set(config.username, config.password or None)
    if config.tls:
        client.tls_set(ca_certs=config.ca_file or None, certfile=config.client_cert or None,
                       keyfile=config.client_key or None)  # fmt: skip
    return client


def _session(config: BrokerConfig, client_id: str, *, subscribe: str = "", expiry: int) -> None:
    """Connect as ``client_id`` with a clean start: with ``subscribe`` the session is made (and kept for ``expiry``
    seconds), without it an old session is ended (``expiry`` 0)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    done = threading.Event()
    client = _client(config, client_id)
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = expiry

    def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            done.set()
        elif subscribe:
            c.subscribe(subscribe, qos=1)
        else:
            done.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_args: done.set()
    client.connect(config.host, config.port, keepalive=30, clean_start=True, properties=properties)
    client.loop_start()
    try:
        if not done.wait(15):
            raise TransportError(f"the MQTT broker at {config.host}:{config.port} did not answer")
    finally:
        client.disconnect()
        client.loop_stop()


class PartnerMqtt(PartnerHttp):
    """The partner server for the carriers' answers, and the MQTT bridge for their telemetry."""

    def __init__(
        self, *, carriers: list[Carrier], out: Path, start: datetime, run: str, url: str,
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        if not url:
            raise TransportError("the MQTT transport needs a broker: set MQTT_URL (e.g. mqtt://127.0.0.1:1883)")
        try:
            self.config = broker_config(
                url, username=settings.MQTT_USERNAME, password=settings.MQTT_PASSWORD, ca_file=settings.MQTT_CA_FILE,
                client_cert=settings.MQTT_CLIENT_CERT_FILE, client_key=settings.MQTT_CLIENT_KEY_FILE,
            )  # fmt: skip
        except ValueError as exc:
            raise TransportError(str(exc)) from None
        self.prefix = f"tms-sim/{run}"
        self.bridge_id = f"tms-sim-bridge-{run}"
        self.published = 0
        super().__init__(carriers=carriers, out=out, start=start, env=env)
        self._bridge: subprocess.Popen[bytes] | None = None
        self._bridge_log = (out / "mqtt-bridge.log").open("wb")
        try:
            _session(self.config, self.bridge_id, subscribe=f"{self.prefix}/+/+", expiry=SESSION_SECONDS)
            self._publisher = _client(self.config, f"tms-sim-fleet-{run}")
            self._publisher.connect(self.config.host, self.config.port, keepalive=30)
            self._publisher.loop_start()
            self._bridge = self._bridge_start(url)
        except BaseException:
            self.close()
            raise

    def _bridge_start(self, url: str) -> subprocess.Popen[bytes]:
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        command = [sys.executable, manage, "mqtt_ingest", "--url", url, "--topic-prefix", self.prefix,
                   "--client-id", self.bridge_id, "--flush-ms", str(BRIDGE_FLUSH_MS)]  # fmt: skip
        # A fixed argv of the project's own bridge; the URL is the operator's MQTT_URL.
        return subprocess.Popen(  # noqa: S603  # nosec B603
            command, cwd=settings.BASE_DIR, env=self.env, stdout=self._bridge_log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def send(self, carrier: Carrier, events: list[dict[str, Any]], now: datetime) -> list[str]:
        self.clock_to(now)
        topic = f"{self.prefix}/{carrier.slug}"
        infos = [self._publisher.publish(f"{topic}/{e['vehicle_id']}", orjson.dumps(e), qos=1) for e in events]
        for info in infos:
            info.wait_for_publish(timeout=STORED_WAIT_SECONDS)
        self.published += len(infos)
        self._wait_stored({uuid.UUID(str(event["event_id"])) for event in events})
        self.counts["batches"] += 1
        return []  # the bridge answers the broker, not the publisher: a refusal shows as a sample never stored

    def _wait_stored(self, ids: set[uuid.UUID]) -> None:
        deadline = time.monotonic() + STORED_WAIT_SECONDS
        while True:
            found = set(TelemetryWindowEvent.objects.filter(event_id__in=ids).values_list("event_id", flat=True))
            if found >= ids:
                return
            if self._bridge is not None and self._bridge.poll() is not None:
                raise TransportError(f"the MQTT bridge exited with {self._bridge.returncode}; see mqtt-bridge.log")
            if time.monotonic() > deadline:
                missing = sorted(str(i) for i in ids - found)[:5]
                raise TransportError(
                    f"{len(ids - found)} published samples were not stored within {STORED_WAIT_SECONDS:.0f} s "
                    f"(e.g. {', '.join(missing)}); see mqtt-bridge.log"
                )
            time.sleep(0.002)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "name": "mqtt", "telemetry": "MQTT bridge", "published": self.published}

    def close(self) -> None:
        process_stop(getattr(self, "_bridge", None), timeout=30)  # SIGTERM drains: what it queued is stored
        publisher = getattr(self, "_publisher", None)
        if publisher is not None:
            publisher.disconnect()
            publisher.loop_stop()
        if hasattr(self, "config"):
            with contextlib.suppress(TransportError, OSError):
                _session(self.config, self.bridge_id, expiry=0)  # the run's session leaves the broker with it
        log = getattr(self, "_bridge_log", None)
        if log is not None:
            log.close()
        super().close()
