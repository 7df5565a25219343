"""A real Celery worker exports its spans over OTLP/HTTP to a receiver, in the trace of the task's publisher.

The receiver is a small HTTP server of this test that takes what a collector
takes (``POST /v1/traces``, protobuf, gzip when asked for) and decodes it with
the OTLP protobuf definitions; the worker is a separate process on the real
broker, configured only by the standard ``OTEL_*`` variables.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.trace import SpanKind

from tests.tracing import SwitchedExporter
from tests.workers import worker_env, worker_start
from tms_console import tracing
from tms_console.celery import app, heartbeat
from tms_console.models import ProcessHeartbeat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]

WAIT_S = 60.0


@dataclass
class ReceivedSpan:
    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]


@dataclass
class Receiver:
    """What the OTLP/HTTP receiver was sent: decoded spans and each request's content headers."""

    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (Content-Type, Content-Encoding)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes, content_type: str, encoding: str) -> None:
        if encoding == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        decoded = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        ReceivedSpan(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={kv.key: kv.value for kv in span.attributes},
                        )
                    )
        with self.lock:
            self.requests.append((content_type, encoding))
            self.spans.extend(decoded)

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An OTLP/HTTP trace receiver on a loopback port of its own, answering as a collector does."""
    received: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert received is not None
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            content_type = self.headers.get("Content-Type", "")
            if content_type != "application/x-protobuf":
                self.send_error(415)
                return
            try:
                received.take(body, content_type, self.headers.get("Content-Encoding", ""))
            except Exception:  # a body that is not an OTLP request: the exporter is told so
                self.send_error(400)
                return
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def traced_worker(receiver: Receiver, spans: SwitchedExporter) -> Iterator[None]:
    """A real worker process exporting to ``receiver``; tasks published from here go to it, not eagerly."""
    env = worker_env(
        OTEL_SDK_DISABLED="false",  # the test settings turn the SDK off for every process the suite starts
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_EXPORTER_OTLP_COMPRESSION="gzip",
        OTEL_BSP_SCHEDULE_DELAY="200",
    )
    for name in ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER"):
        env.pop(name, None)  # the worker names itself ("worker"), exports to the receiver, samples by its parent
    app.control.purge()
    proc = worker_start(env)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        yield
    finally:
        app.conf.task_always_eager = eager
        proc.terminate()
        proc.wait(timeout=20)


def _wait_for_run_span(receiver: Receiver, trace_id: str) -> list[ReceivedSpan]:
    # Polling with a generous deadline: this waits for the worker and its exporter, it does not measure them.
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        trace = receiver.of_trace(trace_id)
        if any(span.name == f"run/{heartbeat.name}" for span in trace):
            return trace
        time.sleep(0.2)
    return receiver.of_trace(trace_id)


def test_a_worker_exports_the_task_it_ran_over_otlp_in_the_publishers_trace(
    receiver: Receiver, spans: SwitchedExporter, traced_worker: None
) -> None:
    with tracing.tracer().start_as_current_span("publisher") as publisher:
        heartbeat.apply_async()
    publisher_context = publisher.get_span_context()
    trace_id = format(publisher_context.trace_id, "032x")
    producer = next(
        span
        for span in spans.get_finished_spans()
        if span.kind is SpanKind.PRODUCER and span.name.endswith(heartbeat.name)
    )
    assert producer.parent is not None and producer.parent.span_id == publisher_context.span_id
    assert producer.context is not None
    producer_id = format(producer.context.span_id, "016x")

    trace = _wait_for_run_span(receiver, trace_id)

    runs = [span for span in trace if span.name == f"run/{heartbeat.name}"]
    assert runs, f"no run span of the task in the publisher's trace; received: {[s.name for s in receiver.spans]}"
    run = runs[0]
    assert run.service == "worker"
    assert run.kind == OtlpSpan.SPAN_KIND_CONSUMER
    assert run.parent_span_id in {producer_id, format(publisher_context.span_id, "016x")}
    # The task really ran in that worker (it records the heartbeat), and its work is in the same trace.
    assert ProcessHeartbeat.objects.filter(name="worker").exists()
    database = [span for span in trace if span.parent_span_id == run.span_id and "db.system" in span.attributes]
    assert database and all(span.service == "worker" for span in database), [s.name for s in trace]
    # What a collector is sent: protobuf, gzip as the worker's OTEL_EXPORTER_OTLP_COMPRESSION asked.
    assert set(receiver.requests) == {("application/x-protobuf", "gzip")}
