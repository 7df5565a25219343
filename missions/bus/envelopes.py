"""CloudEvents 1.0 envelopes (structured mode, JSON) for the event record and telemetry batches.

The data of an event is what the partner API's replay returns for it
(``missions.events.replay_payload``), so one schema serves both. Extension
attributes: ``correlationid`` and, from the Distributed Tracing extension,
``traceparent``. Subjects on NATS: ``<prefix>.events.<carrier>.<subject_type>.<verb>``
and ``<prefix>.telemetry.<carrier>``; ``_`` stands for "no carrier".
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.v1.event import CloudEvent
from django.conf import settings
from django.db.models import F, QuerySet, TextField
from django.db.models.functions import Cast

from missions.bus.types import TELEMETRY_TYPE, cloudevent_type
from missions.models import AuditEvent

_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def source() -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/events"


def subject_token(value: str) -> str:
    """A NATS subject token: no dots, spaces or wildcards."""
    return _TOKEN.sub("_", value) or "_"


def event_subject(row: dict[str, Any]) -> str:
    """The subject of an event row (``event_rows``)."""
    return _event_subject(settings.BUS_SUBJECT_PREFIX, row["carrier_slug"], row["subject_type"], row["action"])


@functools.lru_cache(maxsize=4096)  # a few carriers times a few dozen actions: the same subjects again and again
def _event_subject(prefix: str, carrier_slug: str | None, subject_type: str, action: str) -> str:
    noun, _, verb = action.partition(".")
    parts = [prefix, "events", carrier_slug or "_", subject_type or noun, verb or noun]
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


# What the relay reads of an event row: plain values, no model instance, and the JSON columns as the
# text the database holds, spliced into the envelope unparsed (``orjson.Fragment``). Building model
# instances and decoding then re-encoding three JSON documents per event was half the relay's time.
_JSON_TEXT = ("before", "after", "data")
EVENT_VALUES: dict[str, Any] = {
    "carrier_slug": F("carrier__slug"),
    **{f"{name}_json": Cast(name, output_field=TextField()) for name in _JSON_TEXT},
}
EVENT_COLUMNS = (
    "pk", "occurred_at", "actor_label", "actor_kind", "action", "subject_type", "subject_id",
    "correlation_id", "traceparent", "shipment_id", "mission_id", "carrier_id",
)  # fmt: skip


def event_rows(events: QuerySet[AuditEvent]) -> list[dict[str, Any]]:
    """The rows of ``events`` as the envelope and the subject take them."""
    return list(events.values(*EVENT_COLUMNS, **EVENT_VALUES))


def _json(text: str | None) -> orjson.Fragment | None:
    return None if text is None else orjson.Fragment(text)


def event_row_envelope(row: dict[str, Any]) -> bytes:
    """One event record row (``event_rows``) as a CloudEvent, JSON bytes.

    ``data`` is the event as the partner API's replay returns it (``missions.events.replay_payload``:
    ``test_envelopes_are_what_the_sdk_writes`` holds the two to the same document, and the envelope to
    what the CloudEvents SDK writes for these attributes).
    """
    correlation = row["correlation_id"]
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(row["pk"]),
        "source": source(),
        "type": cloudevent_type(row["action"]),
        "subject": f"{row['subject_type']}/{row['subject_id']}",
        "time": _rfc3339(row["occurred_at"]),
        "datacontenttype": "application/json",
    }
    if correlation:
        document["correlationid"] = str(correlation)
    if row["traceparent"]:
        document["traceparent"] = row["traceparent"]
    document["data"] = {
        "id": row["pk"],
        "occurred_at": row["occurred_at"].isoformat(),
        "actor": "console" if row["actor_kind"] == "user" else row["actor_label"],
        "actor_kind": row["actor_kind"],
        "action": row["action"],
        "subject_type": row["subject_type"],
        "subject_id": row["subject_id"],
        "before": _json(row["before_json"]),
        "after": _json(row["after_json"]),
        "data": _json(row["data_json"]),
        "correlation_id": str(correlation) if correlation else None,
        "shipment_id": row["shipment_id"],
        "mission_id": row["mission_id"],
        "carrier_id": row["carrier_id"],
    }
    return orjson.dumps(document)


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
