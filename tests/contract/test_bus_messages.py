"""Message pact of a downstream consumer with the event bus (tests/contract/bus_pact.py), both sides.

Consumer side: every message of the pact is handed to ``DownstreamConsumer``, which decodes it as
scripts/bus_consumer_example.py does (JSON, the CloudEvent ``id``), lets the example's ``handle`` print it,
and reads the fields a consumer builds on; a message it cannot read fails the test. The pact file
tests/contract/pacts/tms-event-consumer-tms-console-bus.json is committed; the test writes it into a
temporary directory and compares (``PACT_UPDATE=1`` rewrites it, see tests/contract/pactfiles.py).

Provider side: the console records the events through its own services (a tender created and sent, a
lost-comms exception and the incident it opens, telemetry samples) and the outbox relay (``Relay``, with a
publisher that keeps what it is given instead of sending it to NATS) turns them into the exact bytes and
subjects it publishes; Pact's verifier checks each against the committed pact. A changed CloudEvents type
in the envelope breaks the verification.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from pact import Verifier
from pact.types import Message

from missions import services
from missions.bus.publisher import Outgoing, StreamSpec
from missions.bus.relay import Relay
from missions.events import Actor
from missions.models import AuditEvent, TelemetrySample
from runbooks.detection import incident_from_exception
from tests.contract import bus_pact as bp
from tests.contract.pactfiles import PACT_DIR, UPDATE, pact_file_check
from tests.factories import CarrierFactory, MissionFactory, ShipmentFactory

PACT_FILE = PACT_DIR / f"{bp.CONSUMER}-{bp.PROVIDER}.json"
EXAMPLE = Path(settings.BASE_DIR) / "scripts" / "bus_consumer_example.py"


def example_consumer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bus_consumer_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DownstreamConsumer:
    """What a team downstream does with a message: decode, dedupe on the id, read what it builds on."""

    def __init__(self) -> None:
        self.example = example_consumer()
        self.seen = self.example.MemorySeen(1000)
        self.handled: list[dict[str, Any]] = []

    def __call__(self, body: str | bytes | None, metadata: dict[str, object]) -> None:
        assert body is not None, "a message without a body"
        event = json.loads(body)
        assert event["specversion"] == "1.0"
        if not self.seen.add_new(str(event["id"])):
            return
        self.example.handle(len(self.handled) + 1, event)
        summary: dict[str, Any] = {"type": event["type"], "bus_subject": str(metadata["subject"])}
        data = event["data"]
        if event["type"] == "com.tms.telemetry.batch.v1":
            summary["positions"] = [(s["mission_id"], s["ts"], s["lat"], s["lon"]) for s in data["samples"]]
        else:
            summary.update(
                action=data["action"],
                about=(data["subject_type"], data["subject_id"]),
                correlation=event["correlationid"],
                after=data["after"],
            )
            if data["action"].endswith(".status_changed"):
                summary["change"] = (data["before"]["status"], data["after"]["status"])
        self.handled.append(summary)


# --- Consumer ----------------------------------------------------------------------------------


def test_the_downstream_consumer_reads_every_message_of_its_pact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pact = bp.bus_pact()
    consumer = DownstreamConsumer()
    pact.verify(consumer, "Async")
    by_type = {summary["type"]: summary for summary in consumer.handled}
    assert set(by_type) == {
        "com.tms.tender.created.v1",
        "com.tms.tender.status_changed.v1",
        "com.tms.mission.exception.v1",
        "com.tms.incident.triggered.v1",
        "com.tms.telemetry.batch.v1",
    }
    assert by_type["com.tms.tender.status_changed.v1"]["change"] == ("pending", "sent")
    assert by_type["com.tms.mission.exception.v1"]["after"]["kind"] == "lost_comms"
    assert by_type["com.tms.telemetry.batch.v1"]["positions"] == [(12, "2026-12-07T07:00:01Z", 32.7767, -96.797)]
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5 and all(" com.tms." in line for line in printed)
    pact_file_check(pact, tmp_path / "pact")


def test_a_message_without_what_the_consumer_reads_fails_it() -> None:
    consumer = DownstreamConsumer()
    with pytest.raises(KeyError):
        consumer('{"specversion": "1.0", "id": "9", "type": "com.tms.tender.created.v1", "data": {}}', {"subject": "x"})


@pytest.fixture(scope="module", autouse=True)
def _pact_regenerated(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With PACT_UPDATE=1 the file is rewritten before it is verified (the consumer tests may run later)."""
    if UPDATE:
        pact_file_check(bp.bus_pact(), tmp_path_factory.mktemp("pact"))


# --- Provider -----------------------------------------------------------------------------------


class KeepingPublisher:
    """A relay publisher that keeps the messages instead of sending them to NATS."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    def ensure_streams(self, streams: Sequence[StreamSpec]) -> None:
        pass

    def publish(self, stream: str, messages: Sequence[Outgoing]) -> list[int]:
        start = len(self.messages)
        self.messages.extend(messages)
        return list(range(start + 1, len(self.messages) + 1))

    def max_payload(self) -> int:
        return 1024 * 1024

    def close(self) -> None:
        pass


def exported_messages() -> dict[str, Message]:
    """The console records the events of each provider state; the relay's messages, by pact description."""
    actor = Actor.system("dispatcher")
    carrier = CarrierFactory(slug=bp.CARRIER, name="Acme Autonomous")
    shipment = ShipmentFactory()
    # "a dispatcher tendered a shipment to a carrier", "a tender was sent to its carrier"
    tender = services.tender_create(
        actor=actor, shipment_id=shipment.pk, carrier_id=carrier.pk, offered_price_usd=Decimal("1400.00")
    )
    services.tender_mark_sent(tender_id=tender.pk, actor=actor, external_ref="SIM-00001-0a1b2c")
    # "a truck on a mission went silent": the gap detector reports lost comms, the incident opens
    mission = MissionFactory(carrier=carrier)
    exception = services.mission_exception_report(
        mission_id=mission.pk, kind="lost_comms", actor=Actor.system("gap-detector"), detail="No telemetry for 90 s."
    )
    if not AuditEvent.objects.filter(action="incident.triggered").exists():
        incident_from_exception(exception_id=exception.pk)
    # "a truck on a mission reported its positions"
    now = timezone.now()
    for second in range(2):
        TelemetrySample.objects.create(
            mission=mission,
            vehicle=mission.vehicle,
            recorded_at=now + timedelta(seconds=second),
            lat=32.7767 + second / 1000,
            lon=-96.797,
            speed_kph=88.5,
            autonomy_mode="autonomous",
        )
    publisher = KeepingPublisher()
    relay = Relay(publisher)
    relay.events_round()
    relay.telemetry_round()

    wanted = {
        "tender.created": bp.TENDER_CREATED,
        "tender.status_changed": bp.TENDER_STATUS_CHANGED,
        "mission.exception": bp.LOST_COMMS,
        "incident.triggered": bp.INCIDENT_TRIGGERED,
    }
    messages: dict[str, Message] = {}
    for outgoing in publisher.messages:
        event = json.loads(outgoing.payload)
        action = event["data"].get("action") if ".telemetry." not in outgoing.subject else "telemetry"
        description = bp.TELEMETRY_BATCH if action == "telemetry" else wanted.get(str(action))
        if description and description not in messages:
            messages[description] = Message(
                contents=outgoing.payload, metadata={"subject": outgoing.subject}, content_type="application/json"
            )
    assert set(messages) == {*wanted.values(), bp.TELEMETRY_BATCH}, [m.subject for m in publisher.messages]
    return messages


def verify_messages(messages: dict[str, Message]) -> tuple[bool, str]:
    verifier = Verifier(bp.PROVIDER).message_handler(dict(messages)).add_source(PACT_FILE)
    verifier.set_error_on_empty_pact(enabled=True)
    try:
        verifier.verify()
    except RuntimeError:
        return False, verifier.output(strip_ansi=True)
    return True, verifier.output(strip_ansi=True)


@pytest.fixture
def bus_settings(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://tms.example"
    settings.BUS_SUBJECT_PREFIX = "tms"


@pytest.mark.django_db
@pytest.mark.usefixtures("bus_settings")
def test_the_relay_exports_what_the_downstream_consumer_relies_on() -> None:
    ok, output = verify_messages(exported_messages())
    assert ok, output[-6000:]
    assert output.count("generates a message which") == len(bp.MESSAGES), output[-3000:]


@pytest.mark.django_db
@pytest.mark.usefixtures("bus_settings")
def test_a_changed_cloudevents_type_breaks_the_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    from missions.bus import envelopes

    monkeypatch.setattr(envelopes, "cloudevent_type", lambda action: f"com.tms.{action}")  # the version dropped
    ok, output = verify_messages(exported_messages())
    assert not ok
    assert "There were 4 pact failures" in output, output[-3000:]
    assert "com.tms.tender.created.v1" in output
