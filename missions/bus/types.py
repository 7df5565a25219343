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
    "carrier.invited": "A carrier was invited to the carrier portal (created in onboarding).",
    "carrier.invitation_accepted": "A carrier's invitation was used: its portal account exists.",
    "carrier.invitation_revoked": "An unused invitation to the carrier portal was withdrawn.",
    "carrier.profile_updated": "A carrier changed its profile in the carrier portal.",
    "carrier.sandbox_credentials_issued": "A carrier's sandbox was issued (new) credentials for the console's API.",
    "carrier.compliance_document_added": "A carrier's compliance document (insurance, a permit) was accepted.",
    "carrier.compliance_expiring": "A carrier's compliance document expires soon; its people were warned.",
    "carrier.went_live": "A carrier manager approved a certified, insured, contracted carrier's go-live.",
    "carrier.certification_started": "A conformance certification run against a carrier's sandbox was started.",
    "carrier.certification_finished": "A certification run finished: passed, or failed with the checks that failed.",
    "carrier.fleet_paused": "A carrier's fleet was paused (no new missions).",
    "carrier.fleet_resumed": "A carrier's fleet was resumed.",
    "carrier.circuit_opened": "The circuit breaker to a carrier's API opened.",
    "carrier.circuit_half_open": "The breaker let a probe call through.",
    "carrier.circuit_closed": "The breaker closed again.",
    "carrier.circuit_reopened": "A probe failed; the breaker opened again.",
    "carrier.circuit_reset": "An operator reset the breaker.",
    "carrier.flag_changed": "A feature flag of a carrier (an autonomy capability) was switched on or off.",
    "partner_client.created": "A partner API client was issued.",
    "partner_client.secret_rotated": "A partner client's secret was rotated.",
    "partner_client.certificate_changed": "A partner client's registered certificate changed.",
    "webhook_secret.rotated": "A carrier's webhook signing secret was rotated.",
    "signing_key.registered": "A carrier's route-plan signing key was registered.",
    "signing_key.retired": "A carrier's route-plan signing key was retired.",
    "route_plan.verified": "A carrier's signed route plan for a mission verified and became its plan.",
    "route_plan.refused": "A submitted route plan was refused (the reason is in the data); nothing was stored.",
    "carrier.trust_domain_set": "A carrier's SPIFFE trust domain (and whether its telemetry needs SVIDs) was set.",
    "carrier.trust_bundle_added": "A CA certificate was added to a carrier's SPIFFE trust bundle.",
    "carrier.trust_bundle_retired": "A CA certificate of a carrier's SPIFFE trust bundle was retired.",
    "ota_repository.configured": "An administrator trusted a carrier's TUF root for an image or director repository.",
    "ota_repository.refreshed": "A carrier's TUF metadata verified with new versions (or again after a failure).",
    "ota_repository.refresh_failed": "Refreshing a carrier's TUF metadata failed (expired, rollback, bad signature).",
    "vehicle.software_reported": "A vehicle reported a new software version in its telemetry.",
    "vehicle.software_verified": "A vehicle's software version is a target of its carrier's signed TUF metadata.",
    "vehicle.software_refused": "A vehicle's software version is not backed by its carrier's signed TUF metadata.",
    "shipment.created": "A shipment was created.",
    "shipment.status_changed": "A shipment changed status.",
    "tender.created": "A tender was created.",
    "tender.queued": "A tender was queued for sending.",
    "tender.status_changed": "A tender changed status.",
    "tender.remote_cancel_queued": "A cancel was queued to the carrier.",
    "tender.remote_cancelled": "The carrier confirmed a cancel.",
    "tender.remote_cancel_failed": "A cancel could not be delivered.",
    "tender.reconciled": "A tender of unknown outcome, asked about again: what the carrier held, how it was settled.",
    "tender.reconcile_gave_up": "A carrier never answered about a tender of unknown outcome: a person asks it.",
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
    "mission.vehicle_assigned": "A carrier named the truck of a mission booked without one (a fallback load).",
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


# The ``data`` of the actions whose data has a fixed shape, each with an example; the others' data is any object.
EVENT_DATA_SCHEMAS: dict[str, dict[str, Any]] = {
    "carrier.flag_changed": {
        "type": "object",
        "required": ["flag", "label", "enabled", "reason"],
        "properties": {
            "flag": {"type": "string", "description": "The flag's key in missions.flags.CARRIER_FLAGS"},
            "label": {"type": "string"},
            "enabled": {"type": "boolean"},
            "reason": {"type": "string", "minLength": 1, "maxLength": 300},
        },
        "additionalProperties": False,
        "examples": [{"flag": "night_operations", "label": "Night operations", "enabled": True, "reason": "pilot"}],
    },
    "ota_repository.configured": {
        "type": "object",
        "required": ["role", "metadata_url", "root_sha256"],
        "properties": {
            "role": {"enum": ["image", "director"]},
            "metadata_url": {"type": "string"},
            "root_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
        "additionalProperties": False,
        "examples": [
            {"role": "image", "metadata_url": "https://tuf.carrier.example/metadata/", "root_sha256": "ab" * 32}
        ],
    },
    "ota_repository.refreshed": {
        "type": "object",
        "required": ["role", "versions", "expires_at", "targets"],
        "properties": {
            "role": {"enum": ["image", "director"]},
            "versions": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
            "expires_at": {"type": "string", "format": "date-time"},
            "targets": {"type": "integer", "minimum": 0, "description": "How many targets the metadata signs"},
        },
        "additionalProperties": False,
        "examples": [
            {
                "role": "image",
                "versions": {"root": 1, "timestamp": 7, "snapshot": 7, "targets": 3},
                "expires_at": "2026-12-07T00:00:00+00:00",
                "targets": 4,
            }
        ],
    },
    "ota_repository.refresh_failed": {
        "type": "object",
        "required": ["role", "kind", "reason", "security"],
        "properties": {
            "role": {"enum": ["image", "director"]},
            "kind": {
                "enum": ["expired", "rollback", "bad_signature", "hash_mismatch", "invalid", "unreachable", "cache"]
            },
            "reason": {"type": "string", "maxLength": 500},
            "security": {"type": "boolean", "description": "A supply-chain refusal (opens the OTA-failure runbook)"},
        },
        "additionalProperties": False,
        "examples": [
            {"role": "image", "kind": "rollback", "reason": "New timestamp version 1 must be >= 2", "security": True}
        ],
    },
    "vehicle.software_reported": {
        "type": "object",
        "required": ["vehicle_id", "version", "event_id", "ts"],
        "properties": {
            "vehicle_id": {"type": "string", "description": "The carrier's id of the vehicle"},
            "version": {"type": "string", "minLength": 1, "maxLength": 200},
            "event_id": {"type": "string", "format": "uuid", "description": "The telemetry event that reported it"},
            "ts": {"type": "string", "format": "date-time"},
        },
        "additionalProperties": False,
        "examples": [
            {
                "vehicle_id": "TRK-0007",
                "version": "av-stack/4.2.1",
                "event_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
                "ts": "2026-11-26T05:12:00.250Z",
            }
        ],
    },
    "vehicle.software_verified": {
        "type": "object",
        "required": ["vehicle_id", "version", "release_counter"],
        "properties": {
            "vehicle_id": {"type": "string"},
            "version": {"type": "string"},
            "release_counter": {"type": ["integer", "null"], "description": "The target's custom release_counter"},
        },
        "additionalProperties": False,
        "examples": [{"vehicle_id": "TRK-0007", "version": "av-stack/4.2.1", "release_counter": 42}],
    },
    "vehicle.software_refused": {
        "type": "object",
        "required": ["vehicle_id", "version", "code", "reason"],
        "properties": {
            "vehicle_id": {"type": "string"},
            "version": {"type": "string"},
            "code": {
                "enum": [
                    "no_metadata",
                    "metadata_refused",
                    "metadata_expired",
                    "not_a_target",
                    "director_mismatch",
                    "rollback",
                ]
            },
            "reason": {"type": "string", "maxLength": 500},
        },
        "additionalProperties": False,
        "examples": [
            {
                "vehicle_id": "TRK-0007",
                "version": "av-stack/9.9.9",
                "code": "not_a_target",
                "reason": "'av-stack/9.9.9' is not a target of the carrier's signed targets metadata (version 3).",
            }
        ],
    },
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
            "data": EVENT_DATA_SCHEMAS.get(action or "", {"type": "object"}),
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
