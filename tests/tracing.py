"""Tracing in the test process: an in-memory exporter that records only while a test wants spans.

The SDK is configured once per process (``tms_console.tracing.configure``); the
``spans`` fixture switches recording and the instrumentations on for one test
and off again, so the rest of the suite runs untraced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tms_console import tracing


class SwitchedExporter(InMemorySpanExporter):
    """Keeps spans only while ``recording``."""

    recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.recording:
            return SpanExportResult.SUCCESS
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
