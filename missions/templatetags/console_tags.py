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


@register.filter
def event_title(event: AuditEvent) -> str:
    """``tender.status_changed`` -> ``Tender status changed``."""
    subject, _, verb = event.action.partition(".")
    words = f"{subject} {verb}".replace("_", " ").strip()
    return words[:1].upper() + words[1:]


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
