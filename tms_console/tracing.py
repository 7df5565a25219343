"""OpenTelemetry tracing for every process of the console, configured by the standard ``OTEL_*`` variables.

``configure(service)`` is called once by each entry point (the ASGI and WSGI
applications, the Celery worker after it forks, beat, the MQTT bridge and the
simulators). It honours the SDK's own variables: ``OTEL_SDK_DISABLED``,
``OTEL_SERVICE_NAME`` (else the process's role), ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (parent-based, always on
by default) and ``OTEL_BSP_*`` for batching. Spans go over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set
(the exporter reads its own variables), otherwise to the embedded span store
(``tms_console.trace_store``), which the console's waterfalls read.

The maintained instrumentations cover Django requests, Celery (publish and
run), httpx (outbound carrier calls, simulator callbacks, pages), psycopg and
redis. What they do not cover gets spans here: a stored trace continued
(``span_from``), links to a mission's trace (``link_to``), and the ids of the
domain as attributes (``tms_attributes``). Context crosses Channels groups and
MQTT by hand, as a W3C ``traceparent`` string (``current_traceparent``).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACER_NAME = "tms_console"
_PROPAGATOR = TraceContextTextMapPropagator()
_lock = threading.Lock()
_configured: dict[str, Any] = {}

# The domain's ids, under one prefix; never personal data (names, emails, positions).
ATTRIBUTE_PREFIX = "tms."
DOMAIN_KEYS = ("shipment_id", "mission_id", "correlation_id", "carrier", "tender_id", "incident_id", "vehicle")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def otlp_endpoint() -> str | None:
    """Where spans are exported over OTLP/HTTP, if anywhere."""
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def enabled() -> bool:
    """Whether this process records spans (``configure`` ran and the SDK is not disabled)."""
    return bool(_configured.get("provider"))


def configure(
    service: str,
    *,
    exporter: SpanExporter | None = None,
    synchronous: bool = False,
    instrument: bool = True,
) -> bool:
    """Set up the SDK for this process once; False if ``OTEL_SDK_DISABLED`` says not to.

    ``exporter`` replaces the configured one (tests pass an in-memory exporter);
    ``synchronous`` exports each span as it ends instead of in batches.
    """
    with _lock:
        if _configured:
            return enabled()
        if _env_flag("OTEL_SDK_DISABLED"):
            return False
        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
        provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER(_ARG)
        provider.sampler = NoOrphanCalls(provider.sampler)
        if exporter is None:
            exporter = _default_exporter()
        processor = SimpleSpanProcessor(exporter) if synchronous else BatchSpanProcessor(exporter)
        provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _configured["provider"] = provider
        _configured["service"] = resource.attributes.get(SERVICE_NAME)
        if instrument:
            _instrument()
        log.info(
            "tracing on", extra={"service": _configured["service"], "export": "otlp" if otlp_endpoint() else "store"}
        )
        return True


class NoOrphanCalls(Sampler):
    """The configured sampler, except that a call (a client span: database, Redis, HTTP) outside any trace
    is not recorded.

    Such calls come from background threads (the live-map broadcaster, the
    webhook group commit, heartbeats): each would be a trace of one span that
    nobody looks for, and together they cost a fifth of the spans on the
    telemetry path. Inside a trace they are recorded as the sampler decides;
    whatever starts a trace on purpose (a request, a task, a simulator's send)
    is a server, consumer, producer or internal span.
    """

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        # The instrumentations set a call's attributes after it starts: its kind is what the sampler sees.
        if kind is SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoOrphanCalls{{{self.inner.get_description()}}}"


def service_defaults(**variables: str) -> None:
    """A process's own defaults for ``OTEL_*`` variables the operator did not set (before ``configure``)."""
    for name, value in variables.items():
        if not name.startswith("OTEL_"):
            raise ValueError(f"not an OpenTelemetry variable: {name}")
        os.environ.setdefault(name, value)


def _default_exporter() -> SpanExporter:
    if otlp_endpoint():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from tms_console.trace_store import StoreSpanExporter

    return StoreSpanExporter()


def _instrumentors() -> dict[str, Any]:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    return {
        "django": DjangoInstrumentor(),
        "celery": CeleryInstrumentor(),  # type: ignore[no-untyped-call]
        "httpx": HTTPXClientInstrumentor(),
        "psycopg": PsycopgInstrumentor(),
        "redis": RedisInstrumentor(),
    }


def _disabled_instrumentations() -> set[str]:
    """``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (the SDK's comma-separated list), e.g. "psycopg,redis"."""
    raw = os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return {name.strip().lower() for name in raw.split(",") if name.strip()}


def _instrument() -> None:
    disabled = _disabled_instrumentations()
    options: dict[str, dict[str, Any]] = {
        # Health probes and scrapes would drown the traces that matter.
        "django": {"excluded_urls": "healthz,readyz,metrics,static/"},
        "psycopg": {"enable_commenter": False, "skip_dep_check": True},
    }
    for name, instrumentor in _instrumentors().items():
        if name not in disabled:
            instrumentor.instrument(**options.get(name, {}))


def uninstrument() -> None:
    """Remove the instrumentations again (a test that turned tracing on, turning it off)."""
    for instrumentor in _instrumentors().values():
        instrumentor.uninstrument()


def instrument() -> None:
    """Put the instrumentations back after ``uninstrument``."""
    _instrument()


def flush(timeout_millis: int = 5000) -> None:
    """Export what is buffered (before a process exits or a test reads the store)."""
    provider = _configured.get("provider")
    if provider is not None:
        provider.force_flush(timeout_millis)


def shutdown() -> None:
    provider = _configured.get("provider")
    if provider is not None:
        provider.shutdown()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


# --- Context as text -----------------------------------------------------------


def current_traceparent() -> str:
    """The current span's W3C ``traceparent`` ("" when no span is recording)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


@functools.lru_cache(maxsize=4096)
def _span_context(traceparent: str) -> SpanContext | None:
    """The span a W3C ``traceparent`` (version 00) names, or None; cached: the same ones come back often."""
    parts = traceparent.split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16 or len(parts[3]) != 2:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id=trace_id, span_id=span_id, is_remote=True, trace_flags=TraceFlags(flags & 1))


def trace_id_of(traceparent: str | None) -> str:
    """The 32-hex trace id of a ``traceparent`` ("" if there is none)."""
    span_context = _span_context(traceparent) if traceparent else None
    return format(span_context.trace_id, "032x") if span_context is not None else ""


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def link_to(traceparent: str | None, **attributes: Any) -> Link | None:
    """A span link to the span a ``traceparent`` names (a telemetry batch to its mission's trace)."""
    span_context = _span_context(traceparent) if traceparent else None
    if span_context is None:
        return None
    return Link(span_context, attributes=attributes or None)


def tms_attributes(**ids: Any) -> dict[str, Any]:
    """``tms.*`` span attributes from the domain's ids; unknown keys are refused, empty values dropped."""
    unknown = set(ids) - set(DOMAIN_KEYS)
    if unknown:
        raise ValueError(f"not a domain id attribute: {sorted(unknown)}")
    return {ATTRIBUTE_PREFIX + key: str(value) for key, value in ids.items() if value not in (None, "")}


def annotate(**ids: Any) -> None:
    """Put the domain's ids on the current span (a no-op when nothing is recording)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(tms_attributes(**ids))


@contextmanager
def span_from(
    name: str,
    traceparent: str | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    links: list[Link | None] | None = None,
    new_trace: bool = False,
    **ids: Any,
) -> Iterator[Span]:
    """A span in the stored ``traceparent``'s trace: a child of the current span when that is in the
    same trace (or nothing is stored), else a child of the stored span.

    ``new_trace`` starts a root span (an incident's own trace) whatever is
    current; ``links`` point at the spans that led to it.
    """
    stored = _span_context(traceparent) if traceparent else None
    if new_trace:
        parent: otel_context.Context | None = otel_context.Context()
    elif stored is None or stored.trace_id == trace.get_current_span().get_span_context().trace_id:
        parent = None  # nothing stored, or already inside that trace: a child of the current span
    else:
        parent = trace.set_span_in_context(NonRecordingSpan(stored))
    with tracer().start_as_current_span(
        name,
        context=parent,
        kind=kind,
        links=[link for link in links or [] if link is not None],
        attributes=tms_attributes(**ids),
    ) as span:
        yield span


@contextmanager
def untraced() -> Iterator[None]:
    """No instrumentation inside: for background threads that work for many requests at once (the group
    commit writer, the live-map broadcaster), whose calls belong to no trace and would only cost.
    """
    token = otel_context.attach(otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        otel_context.detach(token)


def record_error(exc: BaseException) -> None:
    """Mark the current span failed with the exception (the handlers that catch and go on)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
