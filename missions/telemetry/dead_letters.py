"""Dead letters: record a telemetry message that cannot be taken, list them, discard one; the bridge's gauges.

Writes go through ``dead_letter_record`` and ``dead_letter_discard``; the console
pages and ``/metrics`` read through ``dead_letters_open`` and the collector.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db import transaction
from django.db.models import Count, QuerySet
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from missions.events import Actor, event_record
from missions.models import Carrier, DeadLetter, DeadLetterStatus
from tms_console.domain import Conflict, DomainError
from tms_console.models import ProcessHeartbeat

# What is kept of a payload: enough to see what went wrong, bounded whatever a sender does.
PAYLOAD_KEEP_BYTES = 64 * 1024
BRIDGE_HEARTBEAT = "mqtt-bridge"


@transaction.atomic
def dead_letter_record(
    *, source: str, topic: str, payload: bytes, kind: str, reason: str, carrier: Carrier | None = None
) -> DeadLetter:
    """Keep a message that will not be ingested, with why; the caller may then acknowledge it."""
    letter = DeadLetter.objects.create(
        source=source[:20],
        topic=topic[:300],
        carrier=carrier,
        kind=kind[:40],
        reason=reason[:500],
        payload=bytes(payload[:PAYLOAD_KEEP_BYTES]),
        payload_bytes=len(payload),
        received_at=timezone.now(),
    )
    event_record(
        actor=Actor.system(f"{source}-ingest"),
        action="telemetry.dead_lettered",
        subject_type="dead_letter",
        subject_id=letter.pk,
        data={"kind": letter.kind, "reason": letter.reason, "topic": letter.topic, "bytes": letter.payload_bytes},
        carrier=carrier,
    )
    return letter


@transaction.atomic
def dead_letter_discard(*, dead_letter_id: int, actor: Actor, note: str) -> DeadLetter:
    """On-call has looked at it: mark it discarded, with why."""
    if not note.strip():
        raise DomainError("Say why the message is discarded.", field="note")
    letter = DeadLetter.objects.select_for_update().get(pk=dead_letter_id)
    if letter.status == DeadLetterStatus.DISCARDED:
        raise Conflict("This dead letter is already discarded.")
    letter.status = DeadLetterStatus.DISCARDED
    letter.discarded_at = timezone.now()
    letter.discarded_by = actor.label
    letter.discard_note = note.strip()[:500]
    letter.save(update_fields=["status", "discarded_at", "discarded_by", "discard_note"])
    event_record(
        actor=actor,
        action="telemetry.dead_letter_discarded",
        subject_type="dead_letter",
        subject_id=letter.pk,
        before={"status": DeadLetterStatus.OPEN},
        after={"status": DeadLetterStatus.DISCARDED},
        data={"note": letter.discard_note},
        carrier=letter.carrier,
    )
    return letter


def dead_letters(*, status: str | None = None) -> QuerySet[DeadLetter]:
    rows = DeadLetter.objects.select_related("carrier").defer("payload").order_by("-received_at", "-id")
    return rows.filter(status=status) if status else rows


def payload_preview(letter: DeadLetter, limit: int = 4000) -> str:
    """The kept payload as text a person can read (undecodable bytes shown as escapes)."""
    return bytes(letter.payload[:limit]).decode("utf-8", errors="backslashreplace")


class DeadLetterCollector(Collector):
    """``tms_dead_letters_open`` per source and the MQTT bridge's counters from its heartbeat."""

    def collect(self) -> Iterator[Metric]:
        open_letters = GaugeMetricFamily("tms_dead_letters_open", "Dead letters waiting for on-call", labels=["source"])
        for source, count in (
            DeadLetter.objects.filter(status=DeadLetterStatus.OPEN).values_list("source").annotate(n=Count("id"))
        ):
            open_letters.add_metric([source], float(count))
        yield open_letters
        messages = GaugeMetricFamily(
            "tms_mqtt_bridge_messages",
            "MQTT bridge counts since it started, by outcome (from its last heartbeat)",
            labels=["outcome"],
        )
        beat = ProcessHeartbeat.objects.filter(name=BRIDGE_HEARTBEAT).values_list("detail", flat=True).first()
        for outcome, value in sorted(((beat or {}).get("stats") or {}).items()):
            messages.add_metric([str(outcome)], float(value))
        yield messages
