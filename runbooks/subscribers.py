"""What runbooks react to, declared with the core's event registry (from ``RunbooksConfig.ready``).

* a mission exception opens (or joins) its incident and starts the runbook, in a worker;
* a carrier's circuit opening opens the "carrier API down" incident, right after commit;
* a tender the carrier lost after confirming it, or whose status answers kept breaking the
  contract, opens (or joins) the carrier's "tender out of sync" incident, right after commit;
* a vehicle's software refused by its carrier's TUF metadata, or that metadata refused for a
  security reason, opens (or joins) the carrier's OTA-failure incident, right after commit;
* a page queued for delivery after commit is sent by a worker;
* a runbook that started, or a step that on-call confirmed, skipped or retried, is advanced.
"""

from __future__ import annotations

from typing import Any

from missions.models import AuditEvent
from missions.subscriptions import event_subscribe
from runbooks import detection, ota, pager, tasks

CIRCUIT_TRIPS = frozenset({"carrier.circuit_opened", "carrier.circuit_reopened"})
RUN_MOVES = frozenset(
    {"runbook.started", "runbook.step_confirmed", "runbook.step_skipped", "runbook.step_retry_requested"}
)


def on_mission_exception(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    detection.incident_from_exception(exception_id=event.subject_id)


def on_circuit_trip(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    data = event.data or {}
    detection.incident_from_breaker_trip(
        carrier_id=event.subject_id,
        reason=str(data.get("reason", "")),
        consecutive_failures=data.get("consecutive_failures"),
    )


def on_tender_out_of_sync(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    data = event.data or {}
    detection.incident_from_tender_out_of_sync(tender_id=event.subject_id, reason=str(data.get("reason", "")))


def on_software_refused(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    data = event.data or {}
    ota.incident_from_software_refused(
        vehicle_id=event.subject_id,
        version=str(data.get("version", "")),
        code=str(data.get("code", "")),
        reason=str(data.get("reason", "")),
    )


def on_ota_refresh_refused(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    data = event.data or {}
    assert event.carrier_id is not None
    ota.incident_from_refresh_refused(
        carrier_id=event.carrier_id,
        role=str(data.get("role", "")),
        kind=str(data.get("kind", "")),
        reason=str(data.get("reason", "")),
    )


def on_page_queued(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    pager.page_deliver(message_id=int(event.data["message_id"]))


def on_run_moved(event: AuditEvent, _context: dict[str, Any] | None = None) -> None:
    tasks.runbook_schedule(run_id=int(event.data["run_id"]))


def register() -> None:
    event_subscribe(
        name="runbooks.incident_from_exception", actions={"mission.exception"}, handler=on_mission_exception
    )
    event_subscribe(
        name="runbooks.incident_from_breaker_trip",
        actions=CIRCUIT_TRIPS,
        handler=on_circuit_trip,
        via="inline",
        # The trip is also copied onto waiting shipments' timelines; the carrier's own event is the one.
        when=lambda event: event.subject_type == "carrier",
    )
    event_subscribe(
        name="runbooks.incident_from_tender_out_of_sync",
        actions={"tender.lost", "tender.given_up", "tender.reconciled"},
        handler=on_tender_out_of_sync,
        via="inline",
        # A tender the carrier never confirmed is the console's loss, not the carrier's: no incident.
        when=lambda event: bool((event.data or {}).get("escalate")),
    )
    event_subscribe(
        name="runbooks.incident_from_software_refused",
        actions={"vehicle.software_refused"},
        handler=on_software_refused,
        via="inline",
    )
    event_subscribe(
        name="runbooks.incident_from_ota_refresh_refused",
        actions={"ota_repository.refresh_failed"},
        handler=on_ota_refresh_refused,
        via="inline",
        # An unreachable repository is an outage, not a supply-chain refusal: the last verified
        # metadata stands until it expires.
        when=lambda event: bool((event.data or {}).get("security")) and event.carrier_id is not None,
    )
    event_subscribe(
        name="runbooks.page_deliver",
        actions={"incident.page_queued"},
        handler=on_page_queued,
        when=lambda event: bool((event.data or {}).get("deliver_after_commit")),
    )
    event_subscribe(
        name="runbooks.advance",
        actions=RUN_MOVES,
        handler=on_run_moved,
        via="inline",
        when=lambda event: "run_id" in (event.data or {}),
    )
