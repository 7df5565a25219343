"""The embedded span store: real SDK spans in, rows out; bounded by age and count; never a failure upward."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from tests.conftest import require_service
from tests.tracing import SwitchedExporter
from tms_console import tracing
from tms_console.models import TraceLink, TraceSpan
from tms_console.trace_store import MAX_ATTRIBUTE_CHARS, StoreSpanExporter, store_prune

OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER_SPAN = "b7ad6b7169203331"


@pytest.fixture
def finished(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A provider of this test's own (not the process's), whose finished spans are kept in memory."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")  # read when a provider is made; the test settings say true
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "store-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    try:
        yield provider, memory
    finally:
        provider.shutdown()


def _made_spans(provider: TracerProvider, memory: InMemorySpanExporter) -> tuple[ReadableSpan, ReadableSpan]:
    """A server span and a failed child with a link to another trace; (root, child) as the SDK finished them."""
    tracer = provider.get_tracer("tests")
    other = SpanContext(int(OTHER_TRACE, 16), int(OTHER_SPAN, 16), is_remote=True, trace_flags=TraceFlags(1))
    root_attributes: dict[str, AttributeValue] = {
        "tms.mission_id": "42",
        "http.route": "api/v1/telemetry/batch",
        "http.response.status_code": 202,
        "user_agent.original": "curl/8",  # not a kept prefix
        "enduser.id": "dispatcher@example.com",  # personal: never stored
        "db.statement": "SELECT " + "x" * 1000,
    }
    link = Link(other, attributes={"tms.mission_id": "7"})
    with (
        tracer.start_as_current_span("POST /api/v1/telemetry/batch", kind=SpanKind.SERVER, attributes=root_attributes),
        tracer.start_as_current_span("ingest", links=[link], attributes={"tms.carrier": "acme"}) as child,
    ):
        child.record_exception(ValueError("bad position"))
        child.set_status(Status(StatusCode.ERROR, "ValueError"))
    child_span, root_span = memory.get_finished_spans()  # children end first
    return root_span, child_span


@pytest.mark.django_db
def test_exported_spans_are_stored_with_their_tree_links_errors_and_only_the_kept_attributes(
    finished: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    root, child = _made_spans(*finished)
    assert root.context is not None and child.context is not None

    assert StoreSpanExporter().export([child, root]) is SpanExportResult.SUCCESS

    trace_id = format(root.context.trace_id, "032x")
    stored = {span.name: span for span in TraceSpan.objects.filter(trace_id=trace_id)}
    assert set(stored) == {"POST /api/v1/telemetry/batch", "ingest"}
    server, ingest = stored["POST /api/v1/telemetry/batch"], stored["ingest"]
    assert server.span_id == format(root.context.span_id, "016x")
    assert server.parent_span_id == ""
    assert ingest.parent_span_id == server.span_id
    assert (server.kind, ingest.kind) == ("server", "internal")
    assert server.service == ingest.service == "store-test"
    assert server.duration_ms >= ingest.duration_ms >= 0
    assert server.started_at <= ingest.started_at

    # The failure, its message and the exception event.
    assert ingest.error and not server.error
    assert ingest.status_message == "ValueError"
    exception = next(event for event in ingest.events if event["name"] == "exception")
    assert exception["attributes"]["exception.type"] == "ValueError"
    assert exception["attributes"]["exception.message"] == "bad position"

    # Kept prefixes only; long values clipped.
    assert set(server.attributes) == {"tms.mission_id", "http.route", "http.response.status_code", "db.statement"}
    assert server.attributes["http.response.status_code"] == 202
    assert len(server.attributes["db.statement"]) == MAX_ATTRIBUTE_CHARS
    assert ingest.attributes == {"tms.carrier": "acme"}

    # The link, as a row a trace page can find from the other side.
    assert list(TraceLink.objects.values_list("from_span__name", "trace_id", "span_id")) == [
        ("ingest", OTHER_TRACE, OTHER_SPAN)
    ]


def _rows(count: int, *, started_at: datetime, trace_id: str) -> list[TraceSpan]:
    return TraceSpan.objects.bulk_create(
        [
            TraceSpan(trace_id=trace_id, span_id=f"{n:016x}", name=f"span {n}", service="test", kind="internal",
                      started_at=started_at + timedelta(milliseconds=n), duration_ms=1.0)
            for n in range(count)
        ]
    )  # fmt: skip


@pytest.mark.django_db
def test_prune_drops_spans_past_the_retention(settings: Any) -> None:
    settings.TRACE_STORE_RETENTION_HOURS = 2
    settings.TRACE_STORE_MAX_SPANS = 1000
    now = datetime.now(tz=UTC)
    _rows(3, started_at=now - timedelta(hours=3), trace_id="a" * 32)
    _rows(2, started_at=now - timedelta(hours=1), trace_id="b" * 32)

    assert store_prune(now=now) == 3
    assert set(TraceSpan.objects.values_list("trace_id", flat=True)) == {"b" * 32}


@pytest.mark.django_db
def test_prune_keeps_only_the_newest_spans_past_the_cap(settings: Any) -> None:
    settings.TRACE_STORE_RETENTION_HOURS = 24
    settings.TRACE_STORE_MAX_SPANS = 3
    now = datetime.now(tz=UTC)
    rows = _rows(5, started_at=now - timedelta(minutes=5), trace_id="c" * 32)
    TraceLink.objects.create(from_span=rows[0], trace_id=OTHER_TRACE, span_id=OTHER_SPAN)
    TraceLink.objects.create(from_span=rows[4], trace_id=OTHER_TRACE, span_id=OTHER_SPAN)

    store_prune(now=now)

    assert sorted(TraceSpan.objects.values_list("id", flat=True)) == [row.pk for row in rows[2:]]
    assert list(TraceLink.objects.values_list("from_span_id", flat=True)) == [rows[4].pk]  # links go with their span
    assert store_prune(now=now) == 0  # at the cap: nothing more to drop


@pytest.mark.django_db
def test_the_exporter_prunes_as_it_writes(settings: Any, finished: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    settings.TRACE_STORE_MAX_SPANS = 1
    root, child = _made_spans(*finished)

    assert StoreSpanExporter().export([child, root]) is SpanExportResult.SUCCESS

    assert list(TraceSpan.objects.values_list("name", flat=True)) == ["POST /api/v1/telemetry/batch"]


@pytest.mark.django_db(transaction=True)
def test_a_database_error_fails_the_batch_without_raising_and_the_next_batch_is_stored(
    finished: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    root, child = _made_spans(*finished)
    exporter = StoreSpanExporter()
    table = TraceSpan._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        assert exporter.export([child]) is SpanExportResult.FAILURE
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")

    assert exporter.export([root]) is SpanExportResult.SUCCESS
    assert list(TraceSpan.objects.values_list("name", flat=True)) == ["POST /api/v1/telemetry/batch"]


@pytest.mark.django_db
def test_storing_spans_runs_with_instrumentation_suppressed(
    finished: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    root, child = _made_spans(*finished)
    seen: list[bool] = []

    def note(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(is_instrumentation_enabled())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(note):
        TraceSpan.objects.count()  # outside the exporter: instrumentation would record this query
        assert StoreSpanExporter().export([child, root]) is SpanExportResult.SUCCESS

    assert seen[0] is True
    assert len(seen) > 1 and not any(seen[1:]), seen
    assert is_instrumentation_enabled()  # and switched back on afterwards


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_storing_spans_makes_no_spans_of_its_own_under_the_psycopg_instrumentation(
    spans: SwitchedExporter, finished: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    require_service("PostgreSQL", settings.IS_POSTGRES)
    root, child = _made_spans(*finished)
    connection.close()  # the next connection is made under the instrumentation

    with tracing.span_from("probe"):  # a call is recorded inside a trace (outside one, never)
        TraceSpan.objects.count()
    queries = [span for span in spans.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert queries, "the psycopg instrumentation recorded no query: this test would prove nothing"
    spans.clear()

    with tracing.span_from("probe"):
        assert StoreSpanExporter().export([child, root]) is SpanExportResult.SUCCESS
        assert TraceSpan.objects.count() == 2
    # The count's query and the probe; nothing from the export, though it ran inside the same span.
    assert sorted(span.name for span in spans.get_finished_spans()) == ["SELECT", "probe"]
