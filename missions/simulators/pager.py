"""A local on-call pager for the demo: a receiver of PagerDuty Events API v2 calls.

``make run`` starts it (``manage.py run_pager_sim``) and points the console's
``PAGERDUTY_EVENTS_URL`` at it when no real one is configured, so a newcomer
sees the page an incident sends: each event is printed as one log line and
kept (the last ``keep``) for ``GET /pages``. It checks what PagerDuty checks
(a JSON object, a routing key, an event action, a payload with summary,
source and severity on a trigger) and answers as PagerDuty does: ``202``
with ``{"status": "success", "dedup_key": ...}``, or ``400`` with the errors.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import deque
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 512 * 1024  # PagerDuty's own limit for one event
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


def event_errors(body: Any) -> list[str]:
    """What PagerDuty would refuse in an Events API v2 body (empty when it would accept it)."""
    if not isinstance(body, dict):
        return ["The body must be a JSON object."]
    errors = []
    if not isinstance(body.get("routing_key"), str) or not body["routing_key"]:
        errors.append("'routing_key' is missing or empty.")
    if body.get("event_action") not in ACTIONS:
        errors.append(f"'event_action' must be one of {', '.join(ACTIONS)}.")
    if body.get("event_action") in ("acknowledge", "resolve") and not body.get("dedup_key"):
        errors.append("'dedup_key' is required to acknowledge or resolve.")
    if body.get("event_action") == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is required on a trigger.")
        else:
            for name in ("summary", "source"):
                if not isinstance(payload.get(name), str) or not payload[name]:
                    errors.append(f"'payload.{name}' is missing or empty.")
            if payload.get("severity") not in SEVERITIES:
                errors.append(f"'payload.severity' must be one of {', '.join(SEVERITIES)}.")
    return errors


class PagerSimulator:
    """The receiver, on its own thread (``start``) or in the foreground (``serve_forever``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, keep: int = 500) -> None:
        self.pages: deque[dict[str, Any]] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread: threading.Thread | None = None

    @property
    def events_url(self) -> str:
        return f"{self.url}/v2/enqueue"

    def record(self, body: dict[str, Any]) -> str:
        key = str(body.get("dedup_key") or uuid.uuid4().hex)
        payload = body.get("payload") or {}
        entry = {
            "received_at": datetime.now(UTC).isoformat(),
            "event_action": body["event_action"],
            "dedup_key": key,
            "severity": payload.get("severity"),
            "summary": payload.get("summary"),
            "source": payload.get("source"),
            "custom_details": payload.get("custom_details"),
        }
        with self._lock:
            self.pages.append(entry)
        if body["event_action"] == "trigger":
            log.warning("PAGE %s [%s] %s (from %s)", key, entry["severity"], entry["summary"], entry["source"])
        else:
            log.warning("PAGE %s %s", key, body["event_action"])
        return key

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.pages)

    def start(self) -> PagerSimulator:
        self._thread = threading.Thread(target=self.server.serve_forever, name="pager-sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler_for(pager: PagerSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("pager %s", format % args)

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/pages":
                self._answer(200, {"pages": pager.received()})
            else:
                self._answer(404, {"status": "invalid event", "message": "Not found.", "errors": ["Unknown path."]})

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/v2/enqueue":
                self._answer(404, {"status": "invalid event", "message": "Not found.", "errors": ["Unknown path."]})
                return
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY_BYTES:
                self.close_connection = True
                self._answer(
                    400, {"status": "invalid event", "message": "Event object is invalid", "errors": ["Bad body size."]}
                )
                return
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (ValueError, UnicodeDecodeError):
                body = None
            errors = event_errors(body) if body is not None else ["The body is not JSON."]
            if errors:
                self._answer(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
                return
            key = pager.record(body)
            self._answer(202, {"status": "success", "message": "Event processed", "dedup_key": key})

    return Handler
