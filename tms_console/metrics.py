"""Prometheus metrics at ``/metrics``: SLIs, API latency and errors per endpoint, ingest, queue depth.

* SLIs, targets and error budgets are read from the database at scrape time
  by the collector the SLA engine registers (``sla.metrics``), so every web
  process reports the same figures however many there are.
* Request and ingest counters live in process memory. Several web processes
  (gunicorn / several daphne) must share a ``PROMETHEUS_MULTIPROC_DIR`` (set
  before start, emptied at deploy) so a scrape adds up all of them; without
  it the counters are those of the process that answered.
* Queue depth is read from the broker at scrape time: files waiting in the
  filesystem broker's folder, or ``LLEN`` of the Redis list.

``METRICS_TOKEN`` is required when ``DEBUG`` is off: requests must carry
``Authorization: Bearer <token>`` (Prometheus: ``authorization`` in the
scrape config); without it, production answers 404 and ``manage.py check
--deploy`` warns. The embedded demo serves it to anyone.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.http import require_http_methods
from opentelemetry import trace
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from tms_console.dual_middleware import DualModeMiddleware

log = logging.getLogger(__name__)

HTTP_LATENCY = Histogram(
    "tms_http_request_duration_seconds",
    "Time to answer an HTTP request, by URL route",
    ["endpoint", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_REQUESTS = Counter(
    "tms_http_requests", "HTTP requests answered, by URL route and status class", ["endpoint", "method", "status"]
)
HTTP_ERRORS = Counter("tms_http_request_errors", "HTTP requests answered with a 5xx status, by URL route", ["endpoint"])
TELEMETRY_INGESTED = Counter("tms_telemetry_events_ingested", "Telemetry events validated and stored")
TELEMETRY_REJECTED = Counter(
    "tms_telemetry_events_rejected",
    "Telemetry events refused inside a batch (invalid, or not the sender's mission), by path",
    ["source"],
)
TELEMETRY_BATCHES_BUSY = Counter(
    "tms_telemetry_batches_busy",
    "Telemetry batches answered 503 ingest-busy: no turn in their server process (missions/telemetry/admission.py)",
)
RATELIMIT_LIMITED = Counter("tms_ratelimit_limited", "Requests refused by a rate limit (429), by policy", ["policy"])
RATELIMIT_FALLBACK = Gauge(
    "tms_ratelimit_local_fallback",
    "1 while the shared rate-limit store does not answer and each process limits on its own",
    multiprocess_mode="livemax",
)
AUTH_FAILURES = Counter(
    "tms_auth_failures", "Failed credentials, by kind (bearer_token, client_secret, password)", ["kind"]
)
AUTH_GUARD_REFUSALS = Counter(
    "tms_auth_guard_refusals", "Attempts refused (429) because a failure budget was spent, by kind", ["kind"]
)


def telemetry_ingested(n: int = 1) -> None:
    """Count ``n`` telemetry events stored (called by the ingest path, once per batch)."""
    if n > 0:
        TELEMETRY_INGESTED.inc(n)


def telemetry_rejected(source: str, n: int) -> None:
    """Count ``n`` events of one batch refused (the batch itself may have been accepted)."""
    if n > 0:
        TELEMETRY_REJECTED.labels(source).inc(n)


def telemetry_batch_busy(request: HttpRequest) -> None:
    """Count a batch refused for want of a turn; its 503 is load shed on purpose, not a server error.

    It is left out of ``tms_http_request_errors``, which a canary's analysis and the error alerts
    read: a burst of batches must not look like a failing release.
    """
    TELEMETRY_BATCHES_BUSY.inc()
    request.tms_load_shed = True  # type: ignore[attr-defined]


def http_observe(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count and time one answer of a path that Django's middleware does not see (the webhook fast path)."""
    HTTP_LATENCY.labels(endpoint, method).observe(seconds)
    HTTP_REQUESTS.labels(endpoint, method, f"{status // 100}xx").inc()
    if status >= 500:
        HTTP_ERRORS.labels(endpoint).inc()


def _endpoint(request: HttpRequest) -> str:
    # The route pattern, not the path: one series per view, whatever the ids in the URL.
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    return "/" + (match.route or match.view_name or "unknown")


class MetricsMiddleware(DualModeMiddleware):
    """Times every request and counts it by route, method and status class (static files skipped)."""

    def call(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(settings.STATIC_URL):
            return self.respond(request)
        started = time.perf_counter()
        status = 500
        try:
            response = self.respond(request)
            status = response.status_code
            return response
        finally:
            _observe(request, status, started)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(settings.STATIC_URL):
            return await self.arespond(request)
        started = time.perf_counter()
        status = 500
        try:
            response = await self.arespond(request)
            status = response.status_code
            return response
        finally:
            _observe(request, status, started)


def _observe(request: HttpRequest, status: int, started: float) -> None:
    endpoint = _endpoint(request)
    # The request's trace as an exemplar (OpenMetrics; kept by the client outside multiprocess mode).
    span_context = trace.get_current_span().get_span_context()
    exemplar = {"trace_id": format(span_context.trace_id, "032x")} if span_context.trace_flags.sampled else None
    HTTP_LATENCY.labels(endpoint, request.method or "").observe(time.perf_counter() - started, exemplar)
    HTTP_REQUESTS.labels(endpoint, request.method or "", f"{status // 100}xx").inc()
    if status >= 500 and not getattr(request, "tms_load_shed", False):
        HTTP_ERRORS.labels(endpoint).inc()


def queue_depth() -> int | None:
    """Messages waiting in the Celery broker's default queue (None when it cannot be read)."""
    url = str(getattr(settings, "CELERY_BROKER_URL", ""))
    try:
        if url.startswith("filesystem://"):
            folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in", ""))
            return sum(1 for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(url, socket_timeout=1)
            try:
                return int(client.llen("celery"))  # type: ignore[arg-type]
            finally:
                client.close()
    except Exception:  # a broker hiccup must not break the scrape; the gauge is just absent
        log.warning("queue depth unavailable", exc_info=True)
    return None


class QueueCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        depth = queue_depth()
        gauge = GaugeMetricFamily("tms_celery_queue_depth", "Tasks waiting in the Celery broker", labels=["queue"])
        if depth is not None:
            gauge.add_metric(["celery"], float(depth))
        yield gauge


def registry_for_scrape() -> CollectorRegistry:
    """Process counters (or all processes' in multiprocess mode) plus the database and broker collectors."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(QueueCollector())
    for collector in _scrape_collectors:
        registry.register(collector)
    return registry


# Collectors that read an app's own tables at scrape time (the SLA engine's SLIs), registered by
# that app from its AppConfig.ready: the kernel serves /metrics without knowing the apps above it.
_scrape_collectors: list[Collector] = []


def scrape_collector_register(collector: Collector) -> None:
    if not any(type(c) is type(collector) for c in _scrape_collectors):
        _scrape_collectors.append(collector)


class _Forward(Collector):
    """Re-expose the default registry (process counters) inside the per-scrape registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


def metrics_text(accept: str = "") -> tuple[bytes, str]:
    """The scrape in the format the scraper asks for: OpenMetrics (with exemplars) or the classic text format."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry_for_scrape()), content_type


def metrics_open_without_token() -> bool:
    """Only the embedded demo and the tests (``DEBUG`` / ``TMS_TESTING``) serve /metrics to anyone."""
    return bool(settings.DEBUG or getattr(settings, "TESTING", False))


@require_http_methods(["GET", "HEAD"])
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics`` in the Prometheus text format, for ``Authorization: Bearer <METRICS_TOKEN>``.

    Without ``METRICS_TOKEN`` it is open on the embedded demo (``DEBUG``) and
    absent (404) in production, where ``check --deploy`` says so.
    """
    token: str = getattr(settings, "METRICS_TOKEN", "") or ""
    if not token and not metrics_open_without_token():
        return HttpResponse("Not Found\n", status=404, content_type="text/plain")
    if token:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    body, content_type = metrics_text(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
