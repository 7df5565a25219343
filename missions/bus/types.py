"""Every event type the bus carries: the domain's actions, their CloudEvents type and the JSON Schema of each.

The event record (``missions.events.event_record``) names actions as
``<subject>.<verb>``; on the bus each is the CloudEvents type
``com.tms.<subject>.<verb>.v1``. ``EVENT_ACTIONS`` is the registry: a test
checks that every action the code records is in it, and the schemas under
``docs/events/`` are written from it (``manage.py events_schemas``).
Security events (failed credentials) stay in the console's own log and are
never put on the bus.
"""

from __future__ import annotations

from typing import Any

TYPE_PREFIX = "com.tms."
TYPE_VERSION = "v1"
TELEMETRY_TYPE = "com.tms.telemetry.batch.v1"
# Not for downstream consumers: who failed to sign in, from where.
EXCLUDED_PREFIXES = ("security.",)

EVENT_ACTIONS: dict[str, str] = {
    "carrier.created": "A carrier was added to the console.",
    "carrier.paused": "Tendering to a carrier was paused.",
    "carrier.resumed": "Tendering to a carrier was resumed.",
    "carrier.fleet_paused": "A carrier's fleet was paused (no new missions).",
    "carrier.fleet_resumed": "A carrier's fleet was resumed.",
    "carrier.circuit_opened": "The circuit breaker to a carrier's API opened.",
    "carrier.circuit_half_open": "The breaker let a probe call through.",
    "carrier.circuit_closed": "The breaker closed again.",
    "carrier.circuit_reopened": "A probe failed; the breaker opened again.",
    "carrier.circuit_reset": "An operator reset the breaker.",
    "partner_client.created": "A partner API client was issued.",
    "partner_client.secret_rotated": "A partner client's secret was rotated.",
    "partner_client.certificate_changed": "A partner client's registered certificate changed.",
    "webhook_secret.rotated": "A carrier's webhook signing secret was rotated.",
    "shipment.created": "A shipment was created.",
    "shipment.status_changed": "A shipment changed status.",
    "tender.created": "A tender was created.",
    "tender.queued": "A tender was queued for sending.",
    "tender.status_changed": "A tender changed status.",
    "tender.remote_cancel_queued": "A cancel was queued to the carrier.",
    "tender.remote_cancelled": "The carrier confirmed a cancel.",
    "tender.remote_cancel_failed": "A cancel could not be delivered.",
    "offer.accept": "A carrier accepted a tender.",
    "offer.reject": "A carrier rejected a tender.",
    "offer.counter": "A carrier countered a tender.",
    "offer.ignored": "An answer arrived for a tender that was no longer open.",
    "offer.invalid": "An answer broke the contract.",
    "offer.refused": "An answer was refused.",
    "edi.interchange_sent": "An EDI X12 interchange (204 load tender or 997) was handed to a carrier's transport.",
    "edi.interchange_resent": "An operator sent an EDI interchange again.",
    "edi.interchange_received": "An EDI X12 interchange arrived (990, 214, 997): its status and located errors.",
    "edi.acknowledged": "A carrier's 997 acknowledged an interchange the console sent.",
    "edi.status_reported": "A 214 status that moves no mission state (e.g. arrived at pick-up) was recorded.",
    "waterfall.started": "A tender waterfall started.",
    "waterfall.skipped": "A waterfall skipped a carrier.",
    "waterfall.stopped": "A waterfall was stopped.",
    "waterfall.finished": "A waterfall found a carrier.",
    "waterfall.exhausted": "A waterfall ran out of carriers.",
    "mission.created": "A mission was created from an accepted tender.",
    "mission.status_changed": "A mission changed status.",
    "mission.mode_changed": "A truck changed autonomy mode.",
    "mission.exception": "A mission reported an exception.",
    "mission.exception_resolved": "A mission exception was resolved.",
    "mission.telemetry_resumed": "A silent truck reported again.",
    "telemetry.snapshot_frozen": "A mission's telemetry was frozen as evidence.",
    "telemetry.dead_lettered": "A telemetry message was kept as a dead letter.",
    "telemetry.dead_letter_discarded": "A dead letter was discarded.",
    "incident.triggered": "An incident opened.",
    "incident.repeated": "An open incident was hit again.",
    "incident.assigned": "An incident was assigned.",
    "incident.status_changed": "An incident changed status.",
    "incident.severity_changed": "An incident's severity changed.",
    "incident.note": "A note was added to an incident.",
    "incident.alerts_cleared": "The alerts behind an incident cleared.",
    "incident.page_queued": "A page was queued.",
    "incident.paged": "A page was delivered.",
    "incident.page_failed": "A page could not be delivered.",
    "runbook.started": "A runbook started for an incident.",
    "runbook.step_started": "A runbook step started.",
    "runbook.step_waiting": "A runbook step is waiting.",
    "runbook.step_done": "A runbook step finished.",
    "runbook.step_failed": "A runbook step failed.",
    "runbook.step_retrying": "A runbook step is being retried.",
    "runbook.step_retry_requested": "On-call asked for a step to be retried.",
    "runbook.step_confirmed": "On-call confirmed a manual step.",
    "runbook.step_skipped": "A runbook step was skipped.",
    "runbook.completed": "A runbook completed.",
    "sla.contract_created": "An SLA contract was created.",
    "sla.exclusion_added": "An SLA exclusion window was added.",
    "sla.burn_alert_fired": "An error-budget burn alert fired.",
    "sla.burn_alert_resolved": "A burn alert resolved.",
    "sla.breach_decided": "An SLA breach was decided.",
    "sla.breach_recorded": "An SLA breach was recorded.",
    "sla.credit_entry_created": "A service credit was entered.",
    "sla.telemetry_recomputed": "SLIs were recomputed from backfilled telemetry.",
}


def on_bus(action: str) -> bool:
    return not action.startswith(EXCLUDED_PREFIXES)


def cloudevent_type(action: str) -> str:
    """``mission.status_changed`` -> ``com.tms.mission.status_changed.v1``."""
    return f"{TYPE_PREFIX}{action}.{TYPE_VERSION}"


def _data_schema(action: str | None) -> dict[str, Any]:
    nullable_int = {"type": ["integer", "null"]}
    return {
        "type": "object",
        "required": ["id", "occurred_at", "actor", "actor_kind", "action", "subject_type", "subject_id", "data"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "occurred_at": {"type": "string", "format": "date-time"},
            "actor": {"type": "string"},
            "actor_kind": {"type": "string", "enum": ["user", "system", "carrier"]},
            "action": {"const": action} if action else {"type": "string"},
            "subject_type": {"type": "string"},
            "subject_id": {"type": "integer"},
            "before": {"type": ["object", "null"]},
            "after": {"type": ["object", "null"]},
            "data": {"type": "object"},
            "correlation_id": {"type": ["string", "null"], "format": "uuid"},
            "shipment_id": nullable_int,
            "mission_id": nullable_int,
            "carrier_id": nullable_int,
        },
        "additionalProperties": False,
    }


def event_schema(action: str) -> dict[str, Any]:
    """The JSON Schema of one event type's CloudEvent (structured mode, JSON)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://tms-console.example/events/{cloudevent_type(action)}.schema.json",
        "title": cloudevent_type(action),
        "description": EVENT_ACTIONS.get(action, ""),
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "source": {"type": "string", "minLength": 1},
            "type": {"const": cloudevent_type(action)},
            "subject": {"type": "string", "minLength": 1},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "correlationid": {"type": "string", "format": "uuid"},
            "traceparent": {"type": "string", "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
            "data": _data_schema(action),
        },
        "additionalProperties": False,
    }


def telemetry_schema() -> dict[str, Any]:
    """The JSON Schema of a telemetry batch (one carrier's 1 Hz samples) on the bus."""
    sample = {
        "type": "object",
        "required": ["mission_id", "vehicle_id", "ts", "lat", "lon"],
        "properties": {
            "mission_id": {"type": "integer"},
            "vehicle_id": {"type": ["string", "null"]},
            "ts": {"type": "string", "format": "date-time"},
            "lat": {"type": "number"},
            "lon": {"type": "number"},
            "speed_kph": {"type": ["number", "null"]},
            "heading_deg": {"type": ["number", "null"]},
            "autonomy_mode": {"type": ["string", "null"]},
            "event_id": {"type": ["string", "null"], "format": "uuid"},
        },
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://tms-console.example/events/{TELEMETRY_TYPE}.schema.json",
        "title": TELEMETRY_TYPE,
        "description": "One carrier's telemetry samples (1 Hz) stored since the previous batch.",
        "type": "object",
        "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "pattern": "^telemetry-[0-9]+-[0-9]+$"},
            "source": {"type": "string", "minLength": 1},
            "type": {"const": TELEMETRY_TYPE},
            "subject": {"type": "string", "pattern": "^carrier/"},
            "time": {"type": "string", "format": "date-time"},
            "datacontenttype": {"const": "application/json"},
            "data": {
                "type": "object",
                "required": ["carrier", "first_id", "last_id", "samples"],
                "properties": {
                    "carrier": {"type": "string"},
                    "first_id": {"type": "integer"},
                    "last_id": {"type": "integer"},
                    "samples": {"type": "array", "items": sample, "minItems": 1},
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }


def schema_file_name(cloudevents_type: str) -> str:
    return f"{cloudevents_type}.schema.json"
