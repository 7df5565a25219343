"""Paging on-call through the PagerDuty Events API v2.

One ``PagerMessage`` row per event; sending is idempotent per row (a row
already SENT is never sent again) and retried with backoff. The dedup key is
the incident, so trigger, acknowledge and resolve land on one alert.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from missions.events import Actor
from runbooks.choices import PIN_MINUTES, PageStatus
from runbooks.models import Incident, PagerMessage
from runbooks.records import incident_event
from tms_console import tracing

log = logging.getLogger(__name__)

EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")


def dedup_key(incident: Incident) -> str:
    return f"tms-incident-{incident.pk}"


def page_payload(incident: Incident, event_action: str) -> dict[str, Any]:
    """The Events API v2 body: routing_key, event_action, dedup_key and, for triggers, payload."""
    body: dict[str, Any] = {
        "routing_key": settings.PAGERDUTY_ROUTING_KEY,
        "event_action": event_action,
        "dedup_key": dedup_key(incident),
    }
    if event_action == "trigger":
        mission = incident.mission
        details: dict[str, Any] = {
            "incident_id": incident.pk,
            "kind": incident.kind,
            "correlation_id": str(incident.correlation_id) if incident.correlation_id else None,
        }
        if mission is not None:
            details.update(
                mission_id=mission.pk,
                last_position=(
                    {"lat": mission.last_lat, "lon": mission.last_lon} if mission.last_lat is not None else None
                ),
                last_seen_at=mission.last_seen_at.isoformat() if mission.last_seen_at else None,
            )
        # The trace that led here (the mission's) and the incident's own; the telemetry pinned at detection.
        details["trace_id"] = tracing.trace_id_of(incident.pinned_traceparent) or None
        details["incident_trace_id"] = tracing.trace_id_of(incident.traceparent) or None
        details["telemetry"] = telemetry_summary(incident.pinned_telemetry)
        body["payload"] = {
            "summary": f"INC-{incident.pk} {incident.title}"[:1024],
            "source": incident.carrier.slug if incident.carrier else "tms-console",
            "severity": incident.severity,
            "timestamp": incident.triggered_at.isoformat(),
            "component": f"mission-{mission.pk}" if mission else None,
            "group": incident.kind,
            "custom_details": details,
        }
        body["links"] = [{"href": f"{settings.PUBLIC_BASE_URL}/incidents/{incident.pk}/", "text": "Incident"}]
        for trace_id, text in (
            (details["trace_id"], "Trace that led to it"),
            (details["incident_trace_id"], "Incident trace"),
        ):
            if trace_id:
                body["links"].append({"href": trace_url(trace_id), "text": f"{text} ({trace_id})"})
    return body


def trace_url(trace_id: str) -> str:
    """Where on-call sees a trace: the tracing backend's page when one is configured, else the console's."""
    template = settings.TRACE_UI_URL
    if template:
        return template.replace("{trace_id}", trace_id)
    return f"{settings.PUBLIC_BASE_URL}/traces/{trace_id}/"


def telemetry_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The pinned telemetry window in a few fields (the samples themselves stay in the console)."""
    if not samples:
        return {"samples": 0, "window_minutes": PIN_MINUTES}
    last = samples[-1]
    speeds = [s["speed_kph"] for s in samples if s.get("speed_kph") is not None]
    return {
        "samples": len(samples),
        "window_minutes": PIN_MINUTES,
        "first_at": samples[0].get("recorded_at"),
        "last_at": last.get("recorded_at"),
        "last_position": {"lat": last.get("lat"), "lon": last.get("lon")},
        "last_speed_kph": last.get("speed_kph"),
        "max_speed_kph": max(speeds) if speeds else None,
        "autonomy_mode": last.get("autonomy_mode"),
    }


@transaction.atomic
def page_enqueue(
    *, incident_id: int, event_action: str, actor: Actor, deliver_after_commit: bool = False
) -> PagerMessage | None:
    """Record a page to send. Acknowledge/resolve only follow a trigger that was recorded.

    ``deliver_after_commit``: a worker sends it once this commits (the ``incident.page_queued``
    event's subscriber); otherwise the caller sends it itself (the runbook's paging step).
    """
    if event_action not in EVENT_ACTIONS:
        raise ValueError(event_action)
    incident = Incident.objects.select_related("mission__shipment", "carrier").get(pk=incident_id)
    if event_action != "trigger" and not incident.pages.filter(event_action="trigger").exists():
        return None
    message = PagerMessage.objects.create(
        incident=incident,
        event_action=event_action,
        dedup_key=dedup_key(incident),
        payload=page_payload(incident, event_action),
    )
    incident_event(
        incident,
        actor=actor,
        action="incident.page_queued",
        data={"event_action": event_action, "message_id": message.pk, "deliver_after_commit": deliver_after_commit},
    )
    return message


def page_deliver(*, message_id: int, attempts: int | None = None, sleep: Any = time.sleep) -> bool:
    """Send one page with retries; returns True when PagerDuty (or the configured URL) accepted it."""
    url = settings.PAGERDUTY_EVENTS_URL
    message = PagerMessage.objects.select_related("incident").get(pk=message_id)
    if message.status == PageStatus.SENT:
        return True
    if not url:
        with transaction.atomic():
            PagerMessage.objects.filter(pk=message.pk).update(
                status=PageStatus.FAILED, last_error="paging not configured"
            )
            incident_event(
                message.incident,
                actor=Actor.system("pager"),
                action="incident.page_failed",
                data={"event_action": message.event_action, "error": "PAGERDUTY_EVENTS_URL is not set"},
            )
        return False
    with tracing.span_from(
        f"page {message.event_action}", message.incident.traceparent, incident_id=message.incident_id
    ):
        return _page_send(message, url, attempts=attempts, sleep=sleep)


def _page_send(message: PagerMessage, url: str, *, attempts: int | None, sleep: Any) -> bool:
    tries = attempts or settings.PAGERDUTY_ATTEMPTS
    error = ""
    status_code: int | None = None
    for attempt in range(1, tries + 1):
        try:
            response = httpx.post(url, json=message.payload, timeout=httpx.Timeout(5.0, connect=3.0))
            status_code = response.status_code
            if response.status_code == 202 or 200 <= response.status_code < 300:
                with transaction.atomic():
                    PagerMessage.objects.filter(pk=message.pk).update(
                        status=PageStatus.SENT, attempts=attempt, response_status=status_code, sent_at=timezone.now()
                    )
                    incident_event(
                        message.incident,
                        actor=Actor.system("pager"),
                        action="incident.paged",
                        data={"event_action": message.event_action, "status": status_code, "attempts": attempt},
                    )
                return True
            error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # a 400 will not get better by retrying
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        if attempt < tries:
            sleep(min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
    with transaction.atomic():
        PagerMessage.objects.filter(pk=message.pk).update(
            status=PageStatus.FAILED, attempts=tries, response_status=status_code, last_error=error
        )
        incident_event(
            message.incident,
            actor=Actor.system("pager"),
            action="incident.page_failed",
            data={"event_action": message.event_action, "error": error, "attempts": tries},
        )
    log.warning("page failed", extra={"incident_id": message.incident_id, "error": error})
    return False
