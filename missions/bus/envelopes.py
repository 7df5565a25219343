"""CloudEvents 1.0 envelopes (structured mode, JSON) for the event record and telemetry batches.

The data of an event is what the partner API's replay returns for it
(``missions.events.replay_payload``), so one schema serves both. Extension
attributes: ``correlationid`` and, from the Distributed Tracing extension,
``traceparent``. Subjects on NATS: ``<prefix>.events.<carrier>.<subject_type>.<verb>``
and ``<prefix>.telemetry.<carrier>``; ``_`` stands for "no carrier".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.v1.event import CloudEvent
from django.conf import settings

from missions.bus.types import TELEMETRY_TYPE, cloudevent_type
from missions.events import replay_payload
from missions.models import AuditEvent

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def source() -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/events"


def subject_token(value: str) -> str:
    """A NATS subject token: no dots, spaces or wildcards."""
    return _TOKEN.sub("_", value) or "_"


def event_subject(event: AuditEvent, carrier_slug: str | None) -> str:
    noun, _, verb = event.action.partition(".")
    parts = [settings.BUS_SUBJECT_PREFIX, "events", carrier_slug or "_", event.subject_type or noun, verb or noun]
    return ".".join(subject_token(part) for part in parts)


def telemetry_subject(carrier_slug: str) -> str:
    return f"{settings.BUS_SUBJECT_PREFIX}.telemetry.{subject_token(carrier_slug)}"


def _structured(attributes: dict[str, Any], data: dict[str, Any]) -> bytes:
    """The CloudEvent in structured mode, JSON.

    The SDK builds the event and checks its attributes against the spec; the
    bytes are written with orjson (the SDK's writer uses the standard library's
    encoder, which was most of the relay's time per event). The output is the
    SDK's structured form: the attributes, ``time`` in RFC 3339 with ``Z``, and
    ``data`` inline (``test_envelopes_are_what_the_sdk_writes`` compares them).
    """
    event = CloudEvent(attributes, data)
    document = dict(event.get_attributes())
    document["time"] = _rfc3339(document["time"])
    document["data"] = event.get_data()
    return orjson.dumps(document)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_envelope(event: AuditEvent) -> bytes:
    """One event record row as a CloudEvent (JSON bytes)."""
    attributes: dict[str, Any] = {
        "id": str(event.pk),
        "source": source(),
        "type": cloudevent_type(event.action),
        "subject": f"{event.subject_type}/{event.subject_id}",
        "time": event.occurred_at,
        "datacontenttype": "application/json",
    }
    if event.correlation_id:
        attributes["correlationid"] = str(event.correlation_id)
    if event.traceparent:
        attributes["traceparent"] = event.traceparent
    return _structured(attributes, replay_payload(event))


def telemetry_envelope(*, carrier_slug: str, samples: list[dict[str, Any]], at: datetime) -> bytes:
    """One carrier's samples as one CloudEvent; its id names the first and last sample rows."""
    first, last = samples[0]["_id"], samples[-1]["_id"]
    attributes = {
        "id": f"telemetry-{first}-{last}",
        "source": source(),
        "type": TELEMETRY_TYPE,
        "subject": f"carrier/{carrier_slug}",
        "time": at,
        "datacontenttype": "application/json",
    }
    data = {
        "carrier": carrier_slug,
        "first_id": first,
        "last_id": last,
        "samples": [{k: v for k, v in sample.items() if k != "_id"} for sample in samples],
    }
    return _structured(attributes, data)
