"""JSON-lines logging that carries the request id, the correlation id and the trace and span ids.

The ids live in context variables so they follow the request into services,
and into Celery tasks (the task headers carry them, see ``tms_console.celery``).
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
correlation_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class ContextFilter(logging.Filter):
    """Copy the current request and correlation ids onto every record.

    Django logs failed responses (``django.request``) after the middleware
    chain has unwound and the context variable is reset, but it passes the
    request along: its ``request_id`` attribute is the fallback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            request = getattr(record, "request", None)
            record.request_id = request_id_var.get() or getattr(request, "request_id", None)
        if not getattr(record, "correlation_id", None):
            record.correlation_id = correlation_id_var.get()
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request = getattr(record, "request", None)
        if request is not None and hasattr(request, "method"):
            # An HttpRequest/ASGIRequest object: log what identifies it, not its repr.
            payload["method"] = request.method
            payload["path"] = getattr(request, "path", "")
        for key, value in vars(record).items():
            if key in _STANDARD_ATTRS or key.startswith("_") or value is None or key == "request":
                continue
            payload[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
