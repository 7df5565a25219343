"""JSON log lines carry the request id, and the ids travel into Celery tasks."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, current_app
from celery.contrib.testing.worker import start_worker
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.urls import path

from tms_console.celery import (
    CORRELATION_ID_HEADER,
    REQUEST_ID_HEADER,
    _attach_ids,
    _reset_ids,
    _restore_ids,
)
from tms_console.logging import ContextFilter, JsonFormatter, correlation_id_var, request_id_var
from tms_console.metrics import metrics_view

probe_logger = logging.getLogger("tests.logging_probe")


def probe_view(request: HttpRequest) -> HttpResponse:
    probe_logger.info("probe view ran", extra={"shipment_id": 42})
    return JsonResponse({"ok": True})


def conflict_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse("busy", status=409)


# Under /api/ so the two-factor gate lets an anonymous request through.
urlpatterns = [
    path("api/_log_probe", probe_view),
    path("api/_log_conflict", conflict_view),
    path("metrics", metrics_view),
]


def _attach(stream: io.StringIO) -> logging.Handler:
    """A handler that writes JSON lines exactly as the configured console handler does."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    old_level = root.level
    handler = _attach(stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_settings_route_the_root_logger_through_the_json_formatter() -> None:
    from django.conf import settings

    handler = settings.LOGGING["handlers"]["console"]
    assert settings.LOGGING["formatters"][handler["formatter"]]["()"] == "tms_console.logging.JsonFormatter"
    assert "context" in handler["filters"]
    assert "console" in settings.LOGGING["root"]["handlers"]


@pytest.mark.urls("tests.tms_console.test_logging")
def test_request_id_is_echoed_and_lands_in_the_log_line(db: Any, json_log: io.StringIO) -> None:
    response = Client().get("/api/_log_probe", HTTP_X_REQUEST_ID="req-abc.123", HTTP_X_CORRELATION_ID="corr-77")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-abc.123"
    probe = [line for line in _lines(json_log) if line["logger"] == "tests.logging_probe"]
    assert len(probe) == 1
    assert probe[0]["msg"] == "probe view ran"
    assert probe[0]["request_id"] == "req-abc.123"
    assert probe[0]["correlation_id"] == "corr-77"
    assert probe[0]["shipment_id"] == 42
    assert probe[0]["level"] == "INFO"
    # The id is reset when the request is done.
    assert request_id_var.get() is None


@pytest.mark.urls("tests.tms_console.test_logging")
def test_malformed_request_id_is_replaced_by_a_fresh_one(db: Any, json_log: io.StringIO) -> None:
    response = Client().get("/api/_log_probe", HTTP_X_REQUEST_ID="bad id\nwith newline")
    generated = response["X-Request-ID"]
    assert generated != "bad id\nwith newline"
    assert len(generated) == 32
    int(generated, 16)
    probe = [line for line in _lines(json_log) if line["logger"] == "tests.logging_probe"]
    assert probe[0]["request_id"] == generated
    first = generated
    assert Client().get("/api/_log_probe")["X-Request-ID"] != first


@pytest.mark.urls("tests.tms_console.test_logging")
def test_error_responses_logged_by_django_keep_the_request_id(db: Any, json_log: io.StringIO) -> None:
    # django.request logs a 4xx after the middleware has unwound; the id must survive.
    response = Client().get("/api/_log_conflict", HTTP_X_REQUEST_ID="req-409")
    assert response.status_code == 409
    logged = [line for line in _lines(json_log) if line["logger"] == "django.request"]
    assert logged, json_log.getvalue()
    assert logged[0]["request_id"] == "req-409"
    assert logged[0]["method"] == "GET"
    assert logged[0]["path"] == "/api/_log_conflict"
    assert logged[0]["status_code"] == 409


def test_formatter_writes_one_json_object_per_line_with_exception() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("twice",), None)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    ContextFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["msg"] == "failed twice"
    assert payload["level"] == "ERROR"
    assert "RuntimeError: boom" in payload["exc"]
    assert payload["ts"].endswith("+00:00")


# --- Celery -------------------------------------------------------------------


def test_publish_handler_copies_ids_into_message_headers() -> None:
    headers: dict[str, Any] = {"id": "t-1", "task": "x"}
    token_r = request_id_var.set("req-pub")
    token_c = correlation_id_var.set("corr-pub")
    try:
        _attach_ids(sender="x", body=(), exchange="", routing_key="celery", headers=headers, properties={})
    finally:
        request_id_var.reset(token_r)
        correlation_id_var.reset(token_c)
    assert headers[REQUEST_ID_HEADER] == "req-pub"
    assert headers[CORRELATION_ID_HEADER] == "corr-pub"


def test_publish_outside_a_request_adds_no_empty_headers() -> None:
    headers: dict[str, Any] = {}
    _attach_ids(headers=headers)
    assert headers == {}


def test_prerun_restores_and_postrun_resets_ids() -> None:
    class FakeTask:
        class request:  # mimics celery's task.request context object
            tms_request_id = "req-from-header"
            tms_correlation_id = "corr-from-header"

    task: Any = FakeTask()
    assert request_id_var.get() is None
    _restore_ids(task_id="t-1", task=task, args=(), kwargs={})
    assert request_id_var.get() == "req-from-header"
    assert correlation_id_var.get() == "corr-from-header"
    _reset_ids(task_id="t-1", task=task, args=(), kwargs={}, retval=None, state="SUCCESS")
    assert request_id_var.get() is None
    assert correlation_id_var.get() is None


def test_eager_task_keeps_the_callers_ids(json_log: io.StringIO) -> None:
    app = Celery("eager-probe", set_as_current=False)
    app.conf.task_always_eager = True

    @app.task(name="probe.eager")
    def eager_probe() -> None:
        probe_logger.info("eager task ran")

    token = request_id_var.set("req-eager")
    try:
        eager_probe.delay()
        # The caller's id is intact after the task ran.
        assert request_id_var.get() == "req-eager"
    finally:
        request_id_var.reset(token)
    lines = [line for line in _lines(json_log) if line["msg"] == "eager task ran"]
    assert lines[0]["request_id"] == "req-eager"


def test_ids_travel_through_a_real_broker_into_the_task_log_line(json_log: io.StringIO) -> None:
    """Publish with eager mode off through an in-memory broker; a worker thread consumes it."""
    app = Celery("probe", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.task_always_eager = False
    app.conf.worker_hijack_root_logger = False
    seen: dict[str, Any] = {}
    done = threading.Event()

    @app.task(name="probe.log_ids")
    def log_ids(shipment_id: int) -> None:
        probe_logger.info("task ran", extra={"shipment_id": shipment_id})
        seen["thread"] = threading.get_ident()
        done.set()

    # start_worker makes the probe app the current and default one; give the
    # project's app its place back afterwards, or later tests would publish
    # to this in-memory broker instead of running their tasks eagerly.
    previous = current_app._get_current_object()
    try:
        _run_through_worker(app, log_ids, json_log, done)
    finally:
        previous.set_current()
        previous.set_default()

    # It really ran in the worker's thread, not inline in the publisher.
    assert seen["thread"] != threading.get_ident()
    lines = [line for line in _lines(json_log) if line["msg"] == "task ran"]
    assert len(lines) == 1
    assert lines[0]["request_id"] == "req-celery-1"
    assert lines[0]["correlation_id"] == "corr-celery-1"
    assert lines[0]["shipment_id"] == 7
    assert current_app.main == "tms_console"


def _run_through_worker(app: Celery, log_ids: Any, json_log: io.StringIO, done: threading.Event) -> None:
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        # The worker applies settings.LOGGING on start (tms_console.celery), which
        # replaces the root handlers: capture from here on.
        handler = _attach(json_log)
        token_r = request_id_var.set("req-celery-1")
        token_c = correlation_id_var.set("corr-celery-1")
        try:
            log_ids.apply_async(args=(7,))
        finally:
            request_id_var.reset(token_r)
            correlation_id_var.reset(token_c)
        assert done.wait(timeout=20), "the worker never ran the task"
    logging.getLogger().removeHandler(handler)


@pytest.mark.urls("tests.tms_console.test_logging")
def test_log_lines_and_latency_exemplars_carry_the_requests_trace(db: Any, spans: Any, json_log: io.StringIO) -> None:
    caller_trace = "0af7651916cd43dd8448eb211c80319c"
    response = Client().get("/api/_log_probe", HTTP_TRACEPARENT=f"00-{caller_trace}-b7ad6b7169203331-01")
    assert response.status_code == 200
    probe = [line for line in _lines(json_log) if line["logger"] == "tests.logging_probe"]
    assert len(probe) == 1
    # The caller's trace continues on the server; the line names the server span it was written in.
    assert probe[0]["trace_id"] == caller_trace
    server = [
        s for s in spans.get_finished_spans() if s.context and format(s.context.span_id, "016x") == probe[0]["span_id"]
    ]
    assert len(server) == 1 and format(server[0].context.trace_id, "032x") == caller_trace
    # OpenMetrics scrapes get the trace as an exemplar on the latency histogram; the classic format does not.
    openmetrics = Client().get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert openmetrics["Content-Type"].startswith("application/openmetrics-text")
    exemplars = [
        line
        for line in openmetrics.content.decode().splitlines()
        if line.startswith("tms_http_request_duration_seconds_bucket")
        and 'endpoint="/api/_log_probe"' in line
        and "#" in line
    ]
    assert any(f'trace_id="{caller_trace}"' in line for line in exemplars), exemplars
    classic = Client().get("/metrics")
    assert classic["Content-Type"].startswith("text/plain")
    assert 'trace_id="' not in classic.content.decode()
