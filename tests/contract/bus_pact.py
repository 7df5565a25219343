"""A downstream team's message pact with the console's event bus: the CloudEvents it relies on.

Consumer ``tms-event-consumer`` (a team reading the ``TMS_EVENTS`` / ``TMS_TELEMETRY`` streams the way
scripts/bus_consumer_example.py does), provider ``tms-console-bus`` (the outbox relay, missions/bus/).
One asynchronous message per representative event type: the tender lifecycle (created, status changed),
a telemetry gap (the lost-comms mission exception) and the incident it opens, and a telemetry batch.

What a consumer relies on is pinned: the CloudEvents attributes it routes and dedupes on (``specversion``,
``id``, ``type``, ``subject``, ``time``), the ``correlationid`` extension, the fields of ``data`` it reads,
and the NATS subject (message metadata ``subject``) it filters on. Ids, times and names are matched by
pattern or type; anything else the console adds is free to come and go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pact import Pact, match

CONSUMER = "tms-event-consumer"
PROVIDER = "tms-console-bus"

UTC_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
TENDER_STATUS = r"^(pending|sent|countered|accepted|rejected|expired|cancelled|failed)$"
CARRIER = "acme-autonomous"
CORRELATION_ID = "5b0c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4"

TENDER_CREATED = "a tender.created event"
TENDER_STATUS_CHANGED = "a tender.status_changed event"
LOST_COMMS = "a mission.exception event for a telemetry gap (lost comms)"
INCIDENT_TRIGGERED = "an incident.triggered event"
TELEMETRY_BATCH = "a telemetry batch"


def _event(event_id: int, action: str, subject_type: str, data: dict[str, Any], **ids: int) -> dict[str, Any]:
    """A CloudEvent of the event record (``com.tms.<action>.v1``) with the ``data`` the consumer reads."""
    return {
        "specversion": "1.0",
        "id": match.regex(str(event_id), regex=r"^[0-9]+$"),
        "source": match.regex("https://tms.example/events", regex=r"^https?://\S+/events$"),
        "type": f"com.tms.{action}.v1",
        "subject": match.regex(f"{subject_type}/311", regex=rf"^{subject_type}/[0-9]+$"),
        "time": match.regex("2026-12-07T07:00:00.123456Z", regex=UTC_TIME),
        "datacontenttype": "application/json",
        "correlationid": match.uuid(CORRELATION_ID),
        "data": {
            "id": match.int(event_id),
            "occurred_at": match.regex("2026-12-07T07:00:00.123456+00:00", regex=UTC_TIME),
            "actor": match.str("dispatcher"),
            "actor_kind": match.regex("system", regex=r"^(user|system|carrier)$"),
            "action": action,
            "subject_type": subject_type,
            "subject_id": match.int(311),
            "correlation_id": match.uuid(CORRELATION_ID),
            **{name: match.int(value) for name, value in ids.items()},
            **data,
        },
    }


def _subject(example: str, pattern: str) -> dict[str, Any]:
    return {"subject": match.regex(example, regex=pattern)}


def tender_created(pact: Pact) -> None:
    (
        pact.upon_receiving(TENDER_CREATED, "Async")
        .given("a dispatcher tendered a shipment to a carrier")
        .with_body(
            _event(
                1201,
                "tender.created",
                "tender",
                {"after": {"status": "pending", "carrier": match.str(CARRIER)}},
                shipment_id=77,
                carrier_id=5,
            ),
            content_type="application/json",
        )
        .with_metadata(
            _subject(
                f"tms.events.{CARRIER}.tender.created", r"^[A-Za-z0-9_-]+\.events\.[A-Za-z0-9_-]+\.tender\.created$"
            )
        )
    )


def tender_status_changed(pact: Pact) -> None:
    status = r"^[A-Za-z0-9_-]+\.events\.[A-Za-z0-9_-]+\.tender\.status_changed$"
    (
        pact.upon_receiving(TENDER_STATUS_CHANGED, "Async")
        .given("a tender was sent to its carrier")
        .with_body(
            _event(
                1202,
                "tender.status_changed",
                "tender",
                {
                    "before": {"status": match.regex("pending", regex=TENDER_STATUS)},
                    "after": {"status": match.regex("sent", regex=TENDER_STATUS)},
                },
                shipment_id=77,
                carrier_id=5,
            ),
            content_type="application/json",
        )
        .with_metadata(_subject(f"tms.events.{CARRIER}.tender.status_changed", status))
    )


def lost_comms(pact: Pact) -> None:
    (
        pact.upon_receiving(LOST_COMMS, "Async")
        .given("a truck on a mission went silent")
        .with_body(
            _event(
                1203,
                "mission.exception",
                "exception",
                {"after": {"kind": "lost_comms", "status": match.str("open"), "detail": match.str("No telemetry.")}},
                mission_id=12,
                carrier_id=5,
            ),
            content_type="application/json",
        )
        .with_metadata(
            _subject(
                f"tms.events.{CARRIER}.exception.exception",
                r"^[A-Za-z0-9_-]+\.events\.[A-Za-z0-9_-]+\.exception\.exception$",
            )
        )
    )


def incident_triggered(pact: Pact) -> None:
    (
        pact.upon_receiving(INCIDENT_TRIGGERED, "Async")
        .given("a truck on a mission went silent")
        .with_body(
            _event(
                1204,
                "incident.triggered",
                "incident",
                {
                    "after": {
                        "status": match.str("triggered"),
                        "severity": match.regex("critical", regex=r"^(critical|error|warning|info)$"),
                        "kind": match.str("lost_comms"),
                    },
                },
                mission_id=12,
                carrier_id=5,
            ),
            content_type="application/json",
        )
        .with_metadata(
            _subject(
                f"tms.events.{CARRIER}.incident.triggered",
                r"^[A-Za-z0-9_-]+\.events\.[A-Za-z0-9_-]+\.incident\.triggered$",
            )
        )
    )


def telemetry_batch(pact: Pact) -> None:
    sample = {
        "mission_id": match.int(12),
        "vehicle_id": match.str("TRK-0007"),
        "ts": match.regex("2026-12-07T07:00:01Z", regex=UTC_TIME),
        "lat": match.number(32.7767),
        "lon": match.number(-96.797),
        "speed_kph": match.number(88.5),
    }
    (
        pact.upon_receiving(TELEMETRY_BATCH, "Async")
        .given("a truck on a mission reported its positions")
        .with_body(
            {
                "specversion": "1.0",
                "id": match.regex("telemetry-40-41", regex=r"^telemetry-[0-9]+-[0-9]+$"),
                "source": match.regex("https://tms.example/events", regex=r"^https?://\S+/events$"),
                "type": "com.tms.telemetry.batch.v1",
                "subject": match.regex(f"carrier/{CARRIER}", regex=r"^carrier/[A-Za-z0-9_-]+$"),
                "time": match.regex("2026-12-07T07:00:02.5Z", regex=UTC_TIME),
                "datacontenttype": "application/json",
                "data": {
                    "carrier": match.str(CARRIER),
                    "first_id": match.int(40),
                    "last_id": match.int(41),
                    "samples": match.each_like(sample, min=1),
                },
            },
            content_type="application/json",
        )
        .with_metadata(_subject(f"tms.telemetry.{CARRIER}", r"^[A-Za-z0-9_-]+\.telemetry\.[A-Za-z0-9_-]+$"))
    )


MESSAGES: tuple[Callable[[Pact], None], ...] = (
    tender_created,
    tender_status_changed,
    lost_comms,
    incident_triggered,
    telemetry_batch,
)


def bus_pact() -> Pact:
    pact = Pact(CONSUMER, PROVIDER).with_specification("V4")
    for build in MESSAGES:
        build(pact)
    return pact
