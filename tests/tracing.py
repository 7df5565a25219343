"""Tracing in the test process: an in-memory exporter that records only while a test wants spans.

The SDK is configured once per process (``tms_console.tracing.configure``); the
``spans`` fixture switches recording and the instrumentations on for one test
and off again, so the rest of the suite runs untraced. ``stored_spans`` does
the same and also writes each span to the embedded span store, as a process
without a collector does, for tests that read traces back from the console's
pages. ``store_tender_trace`` writes a made-up but realistic trace straight to
the store with real SDK spans, without touching the process's tracing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from unittest import mock

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tms_console import tracing
from tms_console.trace_store import StoreSpanExporter


class SwitchedExporter(InMemorySpanExporter):
    """Keeps spans only while ``recording``; also hands them to ``store`` when a test set one."""

    recording = False
    store: StoreSpanExporter | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.recording:
            return SpanExportResult.SUCCESS
        if self.store is not None:
            self.store.export(spans)
        return super().export(spans)

    def of_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [span for span in self.get_finished_spans() if span.context and span.context.trace_id == trace_id]


_EXPORTER = SwitchedExporter()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[SwitchedExporter]:
    """Spans of this test, exported synchronously to memory; request it before ``client`` or servers."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tests")
    if not tracing.configure("tests", exporter=_EXPORTER, synchronous=True, instrument=False):
        pytest.fail("tracing could not be configured in the test process")
    _EXPORTER.clear()
    _EXPORTER.recording = True
    tracing.instrument()
    try:
        yield _EXPORTER
    finally:
        tracing.uninstrument()
        _EXPORTER.recording = False
        _EXPORTER.clear()


@pytest.fixture
def stored_spans(spans: SwitchedExporter) -> Iterator[SwitchedExporter]:
    """``spans``, and every span of the test also written to the span store (the console's trace pages read it).

    Spans end on whatever thread ran them, so the test needs a database other threads see:
    ``django_db(transaction=True)``.
    """
    spans.store = StoreSpanExporter()
    try:
        yield spans
    finally:
        spans.store = None


# --- A trace written straight to the store -------------------------------------------------------


@dataclass(frozen=True)
class StoredTrace:
    trace_id: str
    traceparent: str
    # Span names in the order the waterfall must list them (parents before children, siblings by start).
    tree_order: list[str]


def _store_provider(service: str) -> TracerProvider:
    """A provider of its own exporting synchronously to the span store, whatever ``OTEL_SDK_DISABLED`` says
    (the SDK reads it when a provider is made, and the test settings turn it on)."""
    with mock.patch.dict(os.environ, {"OTEL_SDK_DISABLED": "false"}):
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service}))
    provider.add_span_processor(SimpleSpanProcessor(StoreSpanExporter()))
    return provider


def _ns(at: datetime, ms: float) -> int:
    return int(at.timestamp() * 1e9) + int(ms * 1e6)


def store_tender_trace(
    *, at: datetime | None = None, mission_id: int | None = None, shipment_id: int = 41
) -> StoredTrace:
    """A dispatcher's tender through a carrier to its mission, as the processes' exporters would store it.

    Real SDK spans on providers of their own (one per service), exported
    synchronously to the span store: the test process's tracing is left alone.
    The carrier's first answer fails (an error span with a status message); a
    database call sits under the web request. Starts are chosen so the tree
    order differs from the start order (the request's query starts after the
    task it enqueued, so it is listed after the task's whole subtree).
    """
    at = at or datetime.now(tz=UTC)
    providers: dict[str, TracerProvider] = {}

    def tracer(service: str) -> trace.Tracer:
        if service not in providers:
            providers[service] = _store_provider(service)
        return providers[service].get_tracer("tests")

    ids = {"tms.shipment_id": str(shipment_id), "tms.carrier": "lone-star"}
    if mission_id is not None:
        ids["tms.mission_id"] = str(mission_id)
    web, worker, carrier = tracer("tms-web"), tracer("tms-worker"), tracer("carrier-sim")

    def span(t: trace.Tracer, name: str, parent: trace.Span | None, start: float, **kw: object) -> trace.Span:
        context = trace.set_span_in_context(parent) if parent is not None else None
        return t.start_span(name, context=context, start_time=_ns(at, start), **kw)  # type: ignore[arg-type]

    root = span(
        web,
        "POST /shipments/<int:pk>/tender/",
        None,
        0,
        kind=SpanKind.SERVER,
        attributes={"http.method": "POST", "http.route": "shipments/<int:pk>/tender/", "http.status_code": 302, **ids},
    )
    task = span(worker, "run/missions.tender_send", root, 20, kind=SpanKind.CONSUMER, attributes=ids)
    query = span(web, "SELECT", root, 22, kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"})
    query.end(end_time=_ns(at, 24))
    first = span(worker, "POST", task, 25, kind=SpanKind.CLIENT, attributes={"http.method": "POST"})
    first.set_status(Status(StatusCode.ERROR, "HTTP 503 from the carrier"))
    first.end(end_time=_ns(at, 60))
    retry = span(worker, "POST", task, 300, kind=SpanKind.CLIENT, attributes={"http.method": "POST"})
    carrier_server = span(carrier, "carrier-sim POST /tenders", retry, 310, kind=SpanKind.SERVER)
    callback = span(
        web,
        "POST /api/v1/tenders/<pk>/offers/",
        carrier_server,
        320,
        kind=SpanKind.SERVER,
        attributes={"http.method": "POST", "http.status_code": 201, **ids},
    )
    assign = span(web, "mission assigned", callback, 330, attributes=ids)
    assign.end(end_time=_ns(at, 360))
    callback.end(end_time=_ns(at, 380))
    carrier_server.end(end_time=_ns(at, 390))
    retry.end(end_time=_ns(at, 400))
    task.end(end_time=_ns(at, 410))
    root.end(end_time=_ns(at, 30))
    for provider in providers.values():
        provider.shutdown()
    context = root.get_span_context()
    trace_id = format(context.trace_id, "032x")
    return StoredTrace(
        trace_id=trace_id,
        traceparent=f"00-{trace_id}-{format(context.span_id, '016x')}-01",
        tree_order=[
            "POST /shipments/<int:pk>/tender/",
            "run/missions.tender_send",
            "POST",
            "POST",
            "carrier-sim POST /tenders",
            "POST /api/v1/tenders/<pk>/offers/",
            "mission assigned",
            "SELECT",
        ],
    )


def store_linked_span(*, to: StoredTrace, name: str = "telemetry batch", service: str = "tms-web") -> str:
    """A span of a new trace linking to ``to``'s root (a telemetry batch to its mission); its trace id."""
    provider = _store_provider(service)
    link = tracing.link_to(to.traceparent, reason="telemetry")
    assert link is not None
    with provider.get_tracer("tests").start_as_current_span(name, links=[link]) as span:
        trace_id = format(span.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id
