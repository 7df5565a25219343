"""The embedded span store: finished spans in the database, for the console's trace waterfalls.

Used when no OTLP collector is configured (``tms_console.tracing``), so traces
work on a fresh machine. Every process's batch exporter writes here; the
store keeps ``TRACE_STORE_RETENTION_HOURS`` of spans and at most
``TRACE_STORE_MAX_SPANS`` (the oldest go first, pruned by the writers at most
once a minute per process). The writes run with instrumentation suppressed,
so storing spans makes no spans.

Reads: ``trace_spans`` (one trace, in start order, as a waterfall),
``linked_spans`` (spans of other traces that link to it), ``links_out`` (what
its own spans link to) and ``waterfall_compact`` (the same without database
spans, for a card on another page).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.utils import DatabaseError
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from tms_console.models import TraceLink, TraceSpan

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 60.0
MAX_ATTRIBUTE_CHARS = 300
MAX_EVENTS = 10
MAX_LINKS = 16

# Kept from the instrumentations' attributes: what a waterfall needs, nothing personal.
_KEPT_PREFIXES = (
    "tms.",
    "http.",
    "url.path",
    "url.scheme",
    "server.",
    "db.system",
    "db.operation",
    "db.statement",
    "db.query.text",
    "messaging.",
    "celery.",
    "exception.",
    "rpc.",
    "error.",
)


def _suppressed() -> Any:
    return otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_CHARS:
        return value[: MAX_ATTRIBUTE_CHARS - 1] + "…"
    if isinstance(value, (tuple, list)):
        return [_clip(item) for item in value][:20]
    return value


def _attributes(raw: Any) -> dict[str, Any]:
    return {key: _clip(value) for key, value in dict(raw or {}).items() if key.startswith(_KEPT_PREFIXES)}


# The stored columns of a span, in the order the PostgreSQL COPY writes them (after the id).
_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "name", "service", "kind", "started_at",
    "duration_ms", "error", "status_message", "attributes", "events",
)  # fmt: skip


def _row(span: ReadableSpan) -> tuple[tuple[Any, ...], list[tuple[str, str]]]:
    """A span's column values (``_COLUMNS``) and its links as (trace id, span id)."""
    context = span.context
    start = span.start_time or 0
    end = span.end_time or start
    status = span.status
    events = [
        {
            "name": event.name,
            "at_ms": round((event.timestamp - start) / 1e6, 3),
            "attributes": _attributes(event.attributes),
        }
        for event in list(span.events)[:MAX_EVENTS]
    ]
    links = [
        (_hex(link.context.trace_id, 32), _hex(link.context.span_id, 16))
        for link in list(span.links)[:MAX_LINKS]
        if link.context.is_valid
    ]
    values = (
        _hex(context.trace_id, 32) if context else "",
        _hex(context.span_id, 16) if context else "",
        _hex(span.parent.span_id, 16) if span.parent else "",
        span.name[:200],
        str(span.resource.attributes.get("service.name", ""))[:60],
        span.kind.name.lower()[:10],
        datetime.fromtimestamp(start / 1e9, tz=UTC),
        (end - start) / 1e6,
        status.status_code is StatusCode.ERROR,
        (status.description or "")[:300],
        _attributes(span.attributes),
        events,
    )
    return values, links


def _store_orm(rows: list[tuple[tuple[Any, ...], list[tuple[str, str]]]]) -> None:
    with transaction.atomic():
        created = TraceSpan.objects.bulk_create(
            [TraceSpan(**dict(zip(_COLUMNS, values, strict=True))) for values, _ in rows]
        )
        TraceLink.objects.bulk_create(
            [
                TraceLink(from_span=stored, trace_id=trace_id, span_id=span_id)
                for stored, (_, links) in zip(created, rows, strict=True)
                for trace_id, span_id in links
            ]
        )


def _store_copy(rows: list[tuple[tuple[Any, ...], list[tuple[str, str]]]]) -> None:
    """PostgreSQL: ids from the sequence in one query, then COPY the spans and their links (a third of the ORM's cost).

    The table names are the models' own, never input.
    """
    spans, links = TraceSpan._meta.db_table, TraceLink._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [spans, len(rows)]
        )
        ids = [row[0] for row in cursor.fetchall()]
        raw = cursor.cursor  # psycopg's own cursor: COPY is not part of the DB-API
        with raw.copy(f"COPY {spans} (id, {', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for span_id, (values, _) in zip(ids, rows, strict=True):
                copy.write_row(
                    (span_id, *values[:10], orjson.dumps(values[10]).decode(), orjson.dumps(values[11]).decode())
                )
        if any(span_links for _, span_links in rows):
            with raw.copy(f"COPY {links} (from_span_id, trace_id, span_id) FROM STDIN") as copy:
                for span_id, (_, span_links) in zip(ids, rows, strict=True):
                    for trace_id, linked_span_id in span_links:
                        copy.write_row((span_id, trace_id, linked_span_id))


class StoreSpanExporter(SpanExporter):
    """Writes finished spans to the span store (one transaction per batch) and keeps it bounded."""

    def __init__(self) -> None:
        self._last_prune = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        token = _suppressed()
        try:
            rows = [_row(span) for span in spans]
            if connection.vendor == "postgresql":
                _store_copy(rows)
            else:
                _store_orm(rows)
            if time.monotonic() - self._last_prune >= PRUNE_EVERY_SECONDS:
                self._last_prune = time.monotonic()
                store_prune()
            return SpanExportResult.SUCCESS
        except DatabaseError as exc:
            # Tracing never takes the product down: a busy or lost database drops this batch.
            log.warning("spans not stored", extra={"spans": len(spans), "error": str(exc)[:200]})
            close_old_connections()
            return SpanExportResult.FAILURE
        finally:
            otel_context.detach(token)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def store_prune(*, now: datetime | None = None) -> int:
    """Drop spans past the retention and the oldest past the count cap; the number of spans dropped (their links
    go with them and are not counted)."""
    now = now or datetime.now(tz=UTC)
    retention_hours: float = settings.TRACE_STORE_RETENTION_HOURS
    cutoff = now.timestamp() - retention_hours * 3600
    _, by_model = TraceSpan.objects.filter(started_at__lt=datetime.fromtimestamp(cutoff, tz=UTC)).delete()
    dropped = by_model.get(TraceSpan._meta.label, 0)
    cap: int = settings.TRACE_STORE_MAX_SPANS
    boundary = TraceSpan.objects.order_by("-id").values_list("id", flat=True)[cap : cap + 1].first()
    if boundary is not None:
        _, by_model = TraceSpan.objects.filter(id__lte=boundary).delete()
        dropped += by_model.get(TraceSpan._meta.label, 0)
    return dropped


# --- Reads ----------------------------------------------------------------------


@dataclass
class WaterfallSpan:
    span: TraceSpan
    depth: int
    offset_ms: float
    offset_pct: float = 0.0
    width_pct: float = 0.0
    children: list[WaterfallSpan] = field(default_factory=list)


@dataclass
class Waterfall:
    trace_id: str
    rows: list[WaterfallSpan]
    total_ms: float
    services: list[str]
    errors: int
    truncated: bool
    # Spans left out of ``rows`` by ``waterfall_compact`` (database calls, rows past the cap).
    hidden: int = 0

    @property
    def empty(self) -> bool:
        return not self.rows

    @property
    def ticks(self) -> list[tuple[float, float]]:
        """(percent of the width, milliseconds) for the time axis: 0, a quarter, ... the end."""
        return [(pct, round(self.total_ms * pct / 100, 1)) for pct in (0.0, 25.0, 50.0, 75.0, 100.0)]

    @property
    def subjects(self) -> dict[str, list[str]]:
        """The domain's ids the trace's spans carry (``tms.mission_id`` -> ["12"]), for links to their pages."""
        found: dict[str, set[str]] = {}
        for row in self.rows:
            for key, value in (row.span.attributes or {}).items():
                if key.startswith("tms.") and value not in (None, ""):
                    found.setdefault(key.removeprefix("tms."), set()).add(str(value))
        return {key: sorted(values, key=lambda v: (len(v), v)) for key, values in sorted(found.items())}


MAX_WATERFALL_SPANS = 400


def trace_spans(trace_id: str, *, limit: int = MAX_WATERFALL_SPANS) -> Waterfall:
    """One trace as a waterfall: spans in tree order (parents before children), offsets from the first start."""
    spans = list(TraceSpan.objects.filter(trace_id=trace_id).order_by("started_at", "id")[: limit + 1])
    truncated = len(spans) > limit
    spans = spans[:limit]
    if not spans:
        return Waterfall(trace_id=trace_id, rows=[], total_ms=0.0, services=[], errors=0, truncated=False)
    start = spans[0].started_at
    nodes = {span.span_id: WaterfallSpan(span=span, depth=0, offset_ms=0.0) for span in spans}
    roots: list[WaterfallSpan] = []
    for span in spans:
        node = nodes[span.span_id]
        node.offset_ms = (span.started_at - start).total_seconds() * 1000
        parent = nodes.get(span.parent_span_id)
        if parent is not None and parent is not node:
            parent.children.append(node)
        else:
            roots.append(node)  # the root, or a span whose parent is in another store or was pruned
    total = max(node.offset_ms + node.span.duration_ms for node in nodes.values()) or 1.0
    rows: list[WaterfallSpan] = []

    def walk(node: WaterfallSpan, depth: int) -> None:
        node.depth = depth
        node.offset_pct = round(100 * node.offset_ms / total, 3)
        node.width_pct = round(max(100 * node.span.duration_ms / total, 0.3), 3)
        rows.append(node)
        for child in node.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return Waterfall(
        trace_id=trace_id,
        rows=rows,
        total_ms=total,
        services=sorted({span.service for span in spans}),
        errors=sum(1 for span in spans if span.error),
        truncated=truncated,
    )


def linked_spans(trace_id: str, *, limit: int = 50) -> list[TraceSpan]:
    """Spans of other traces that link to this one (telemetry batches to a mission), newest first."""
    return list(
        TraceSpan.objects.filter(links__trace_id=trace_id).exclude(trace_id=trace_id).order_by("-started_at")[:limit]
    )


TRACE_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def is_trace_id(value: str) -> bool:
    """A W3C trace id: 32 lower-case hex digits, not all zero (the spec's invalid id)."""
    return bool(TRACE_ID_PATTERN.match(value)) and value != "0" * 32


def waterfall_compact(waterfall: Waterfall, *, max_rows: int = 40) -> Waterfall:
    """The waterfall for a card on another page: database calls folded away, at most ``max_rows`` rows.

    Database spans are leaves (nothing starts inside a query), so dropping them
    keeps every other row's parent and depth.
    """
    kept = [row for row in waterfall.rows if "db.system" not in (row.span.attributes or {})]
    shown = kept[:max_rows]
    return Waterfall(
        trace_id=waterfall.trace_id,
        rows=shown,
        total_ms=waterfall.total_ms,
        services=waterfall.services,
        errors=waterfall.errors,
        truncated=waterfall.truncated,
        hidden=waterfall.hidden + len(waterfall.rows) - len(shown),
    )


@dataclass(frozen=True)
class LinkOut:
    """A span of this trace that links to a span of another trace (an incident to its mission's trace)."""

    span: TraceSpan
    trace_id: str
    span_id: str


def links_out(trace_id: str, *, limit: int = 50) -> list[LinkOut]:
    """What this trace's spans link to in other traces, oldest first."""
    links = (
        TraceLink.objects.filter(from_span__trace_id=trace_id)
        .exclude(trace_id=trace_id)
        .select_related("from_span")
        .order_by("from_span__started_at", "id")[:limit]
    )
    return [LinkOut(span=link.from_span, trace_id=link.trace_id, span_id=link.span_id) for link in links]
