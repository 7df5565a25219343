"""What the console shows of a trace: its waterfall from the span store, or why the store has none.

The trace page (``/traces/<trace id>/``) and the trace cards on the mission
and incident pages read through here; the spans themselves come from
``tms_console.trace_store``. A trace with no stored spans is explained rather
than shown blank: tracing is off in this deployment, the spans went to an
OTLP collector (with a link to its UI when ``TRACE_UI_URL`` is set), or the
store never got them or has pruned them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings

from tms_console import tracing
from tms_console.models import TraceSpan
from tms_console.trace_store import (
    LinkOut,
    Waterfall,
    linked_spans,
    links_out,
    trace_spans,
    waterfall_compact,
)

# The reasons a trace has no spans here, for the templates.
UNTRACED = "untraced"  # the object recorded no traceparent (made while tracing was off, or before it existed)
DISABLED = "disabled"  # OTEL_SDK_DISABLED: no process records spans
COLLECTOR = "collector"  # spans are exported over OTLP, not stored here
STORE = "store"  # stored here, but not (or no longer) this trace's


@dataclass(frozen=True)
class TraceAbsence:
    """Why a trace has no spans in the store.

    ``pruned`` is True when the traced work began before ``store_since``, the
    oldest moment the store still holds (its retention horizon, or its oldest
    span once the count cap has pruned past that).
    """

    reason: str
    retention_hours: float
    store_since: datetime
    pruned: bool = False
    collector: str = ""


@dataclass(frozen=True)
class TraceView:
    """One trace as a page or card shows it; ``waterfall`` is None when the object recorded no trace."""

    trace_id: str
    waterfall: Waterfall | None
    absence: TraceAbsence | None
    external_url: str = ""
    linked: list[TraceSpan] = field(default_factory=list)
    links_out: list[LinkOut] = field(default_factory=list)


def external_trace_url(trace_id: str) -> str:
    """The trace in the tracing backend's own UI (``TRACE_UI_URL`` with ``{trace_id}``), or ""."""
    template: str = settings.TRACE_UI_URL
    return template.replace("{trace_id}", trace_id) if template and trace_id else ""


def _sdk_disabled() -> bool:
    # The SDK's own switch, read the way the SDK reads it (tms_console.tracing.configure).
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() in {"1", "true", "yes", "on"}


def trace_absence(
    *, recorded: bool = True, began_at: datetime | None = None, now: datetime | None = None
) -> TraceAbsence:
    """Why a trace has no stored spans; ``began_at``: when the traced work happened, if the caller knows."""
    retention_hours: float = settings.TRACE_STORE_RETENTION_HOURS
    now = now or datetime.now(tz=UTC)
    horizon = datetime.fromtimestamp(now.timestamp() - retention_hours * 3600, tz=UTC)
    oldest = TraceSpan.objects.order_by("started_at").values_list("started_at", flat=True).first()
    since = max(horizon, oldest) if oldest is not None else horizon
    if not recorded:
        return TraceAbsence(reason=UNTRACED, retention_hours=retention_hours, store_since=since)
    if _sdk_disabled():
        return TraceAbsence(reason=DISABLED, retention_hours=retention_hours, store_since=since)
    collector = tracing.otlp_endpoint()
    if collector:
        return TraceAbsence(reason=COLLECTOR, retention_hours=retention_hours, store_since=since, collector=collector)
    return TraceAbsence(
        reason=STORE,
        retention_hours=retention_hours,
        store_since=since,
        pruned=began_at is not None and began_at < since,
    )


def trace_page(trace_id: str, *, now: datetime | None = None) -> TraceView:
    """Everything the trace page shows: the waterfall, the spans linking here and what this trace links to."""
    waterfall = trace_spans(trace_id)
    return TraceView(
        trace_id=trace_id,
        waterfall=waterfall,
        absence=trace_absence(now=now) if waterfall.empty else None,
        external_url=external_trace_url(trace_id),
        linked=linked_spans(trace_id),
        links_out=links_out(trace_id),
    )


def trace_card(
    traceparent: str, *, began_at: datetime | None = None, max_rows: int = 40, now: datetime | None = None
) -> TraceView:
    """A domain object's trace (its stored W3C ``traceparent``) for a card on its page: database calls folded."""
    trace_id = tracing.trace_id_of(traceparent)
    if not trace_id:
        return TraceView(trace_id="", waterfall=None, absence=trace_absence(recorded=False, now=now))
    waterfall = waterfall_compact(trace_spans(trace_id), max_rows=max_rows)
    return TraceView(
        trace_id=trace_id,
        waterfall=waterfall,
        absence=trace_absence(began_at=began_at, now=now) if waterfall.empty and not waterfall.hidden else None,
        external_url=external_trace_url(trace_id),
    )
