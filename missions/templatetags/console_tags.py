"""Small template helpers for the console pages (event wording, query strings).

``static/js/live.js`` words live timeline rows the same way, so a row looks
alike whether the server rendered it or it arrived over the websocket.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from django import template
from django.http import QueryDict
from django.utils.dateparse import parse_datetime

from missions.models import AuditEvent

register = template.Library()


# Incident and runbook events read better with their own wording than the generic
# "<subject> <verb>" and "key: value" forms below; keep static/js/live.js in step.
_STEP_ACTIONS = {
    "runbook.step_waiting": "Waiting for on-call to confirm",
    "runbook.step_started": "Started",
    "runbook.step_confirmed": "Confirmed",
    "runbook.step_done": "Done",
    "runbook.step_skipped": "Skipped",
    "runbook.step_failed": "Failed",
    "runbook.step_retrying": "Retrying",
    "runbook.step_retry_requested": "Retry requested",
}
_INCIDENT_TITLES = {
    "runbook.started": "Runbook started",
    "incident.page_queued": "Page queued",
    "incident.paged": "On-call paged",
    "incident.page_failed": "Page failed",
    "incident.note": "Note",
}
_BRIEF = 200


def _brief(text: Any, limit: int = _BRIEF) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def _data(event: AuditEvent) -> dict[str, Any]:
    return event.data if isinstance(event.data, dict) else {}


@register.filter
def event_title(event: AuditEvent) -> str:
    """``tender.status_changed`` -> ``Tender status changed``; a runbook step event names its step."""
    data = _data(event)
    if event.action in _STEP_ACTIONS and data.get("step") is not None:
        return f"Step {data['step']}: {data.get('title') or ''}".rstrip(": ")
    if event.action in _INCIDENT_TITLES:
        return _INCIDENT_TITLES[event.action]
    subject, _, verb = event.action.partition(".")
    words = f"{subject} {verb}".replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _incident_summary(event: AuditEvent) -> str | None:
    """The one-line wording of runbook and paging events, or None for every other action."""
    data = _data(event)
    parts: list[str] = []
    if event.action in _STEP_ACTIONS:
        outcome = _STEP_ACTIONS[event.action]
        if event.action == "runbook.step_failed" and data.get("attempts"):
            outcome += f" after {data['attempts']} attempt{'s' if data['attempts'] != 1 else ''}"
        elif event.action == "runbook.step_retrying" and data.get("attempt"):
            outcome += f" (attempt {data['attempt']} failed)"
        parts.append(outcome)
        if data.get("note"):
            parts.append(f"Note: {_brief(data['note'])}")
        if data.get("reason"):
            parts.append(f"Reason: {_brief(data['reason'])}")
        if data.get("error"):
            parts.append(f"Error: {_brief(data['error'])}")
        result = data.get("result")
        if isinstance(result, dict) and result:
            pairs = [(str(k).replace("_", " "), v) for k, v in result.items() if v not in (None, "")]
            shown = ", ".join(f"{k}: {_plain(v)}" for k, v in pairs)
            if shown:
                parts.append(f"Result: {_brief(shown)}")
        return " · ".join(parts)
    if event.action == "runbook.started":
        name = data.get("runbook") or ""
        return f"{name} v{data['version']}" if data.get("version") is not None else str(name)
    if event.action in ("incident.page_queued", "incident.paged", "incident.page_failed"):
        if data.get("event_action"):
            parts.append(f"PagerDuty {data['event_action']}")
        if data.get("status"):
            parts.append(f"HTTP {data['status']}")
        if data.get("attempts"):
            parts.append(f"{data['attempts']} attempt{'s' if data['attempts'] != 1 else ''}")
        if data.get("error"):
            parts.append(f"Error: {_brief(data['error'])}")
        return " · ".join(parts)
    if event.action == "incident.note":
        return str(data.get("text") or "")
    return None


_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


def _plain(value: Any) -> str:
    if isinstance(value, str) and _ISO_DATETIME.match(value):
        parsed = parse_datetime(value)
        if parsed is not None:
            utc = parsed.astimezone(UTC)
            return f"{utc:%b} {utc.day}, {utc:%H:%M:%S}"
    if isinstance(value, str):
        return value.replace("_", " ") if value.islower() and " " not in value else value
    return "" if value is None else str(value)


@register.filter
def event_summary(event: AuditEvent) -> str:
    """What changed, in one line: ``status: sent → accepted · reason: ...``."""
    special = _incident_summary(event)
    if special is not None:
        return special
    before: dict[str, Any] = event.before if isinstance(event.before, dict) else {}
    after: dict[str, Any] = event.after if isinstance(event.after, dict) else {}
    data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
    parts: list[str] = []
    for key, new in after.items():
        if new in (None, "", [], {}):
            continue
        if key in before and before[key] != new:
            parts.append(f"{key.replace('_', ' ')}: {_plain(before[key])} → {_plain(new)}")
        elif key not in before:
            parts.append(f"{key.replace('_', ' ')}: {_plain(new)}")
    for key in ("reason", "note", "text", "why", "summary", "confirmation"):
        if data.get(key):
            parts.append(f"{key}: {data[key]}")
    return " · ".join(parts)


@register.simple_tag(takes_context=True)
def query_with(context: template.Context, **changes: Any) -> str:
    """The current query string with ``changes`` applied (``None`` drops a key), e.g. for pagination links."""
    request = context.get("request")
    params = request.GET.copy() if request is not None else QueryDict(mutable=True)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def status_label(value: str) -> str:
    text = (value or "").replace("_", " ")
    return text[:1].upper() + text[1:]


# How a stored measurement unit reads next to a number ("99.20 %", "850 ms").
_UNIT_LABELS = {"pct": "%", "seconds": "s", "second": "s", "ms": "ms"}


@register.filter
def unit_label(value: str) -> str:
    return _UNIT_LABELS.get(value or "", value or "")
