"""The hot path for signed telemetry webhooks, in front of Django's WSGI handler.

A carrier's fleet posts one small signed delivery per truck per second, so
this path is where request overhead decides throughput (DESIGN.md §2: serve
the hot ingest path from a WSGI path measured to be fast). It takes only the
common case, a well-formed, verified ``telemetry`` delivery, and does for it
exactly what ``CarrierWebhookView`` does (same verification, same
``telemetry_delivery``, same answer), without the console's middleware, URL
resolution and DRF. Anything else (another event type, a bad signature,
malformed JSON, an unknown carrier) is handed to Django untouched, with the
body it read, and answered there with the usual problem document.

Per process it keeps, for ``FACTS_TTL_SECONDS``, each carrier's id and
webhook secrets (a rotation or revocation takes effect within that time;
a secret's own expiry is checked at every request) and the ingest's mission
cache. Verified deliveries are limited per carrier (``WEBHOOK_RATE_LIMIT``
per minute) by the atomic counters of ``tms_console.ratelimit``, in Redis when
configured, so the limit holds across every worker; each answer carries the
``RateLimit-Policy`` and ``RateLimit`` fields.

Used by ``tms_console.wsgi`` (gunicorn); ``make run`` serves everything with
daphne, where the same deliveries go through the view.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from django.utils import timezone
from opentelemetry.trace import SpanKind

from missions.models import Carrier
from missions.models.partner import WebhookSecret
from missions.partner.api.fields import rfc3339_parse
from missions.partner.api.limits import webhook_policy
from missions.partner.api.webhooks import (
    WebhookVerificationError,
    delivery_per_item,
    telemetry_delivery,
    webhook_verify,
)
from missions.telemetry.group_commit import GroupCommit
from missions.telemetry.ingest import MissionCache
from tms_console import tracing
from tms_console.logging import request_id_var
from tms_console.metrics import http_observe
from tms_console.problem import PROBLEM_CONTENT_TYPE, problem_body
from tms_console.ratelimit import limiter, ratelimit_headers
from tms_console.unstorable import may_hold_unstorable, unstorable_find

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

PATH = re.compile(r"^/api/v1/webhooks/(?P<slug>[-a-zA-Z0-9_]{1,50})$")
# The route label Django's metrics give this URL (tms_console.metrics._endpoint): one series whoever answers.
WEBHOOK_ENDPOINT = "/api/v1/webhooks/<slug:carrier_slug>"
FACTS_TTL_SECONDS = 5.0
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Headers every API answer carries (SecurityMiddleware's, for a JSON body).
_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
]


@dataclass(frozen=True)
class CarrierFacts:
    """What verifying a delivery needs about a carrier, cached for a few seconds."""

    carrier: Any  # missions.models.Carrier
    secrets: tuple[tuple[str, datetime | None], ...]  # (secret, valid_until)
    fetched_at: float

    def valid_secrets(self, now: datetime) -> list[str]:
        return [secret for secret, until in self.secrets if until is None or until > now]


class WebhookFastPath:
    """WSGI middleware: serve verified telemetry deliveries, pass everything else to ``app``."""

    def __init__(self, app: WSGIApp, *, group_commit: bool = True) -> None:

        self.app = app
        self.missions = MissionCache()
        self.group = GroupCommit(self.missions) if group_commit else None
        self._facts: dict[str, CarrierFacts | None] = {}
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = PATH.match(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        if environ.get("CONTENT_TYPE", "").split(";")[0].strip() != "application/json":
            return self.app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return self.app(environ, start_response)
        if length <= 0 or length > int(settings.API_MAX_BODY_BYTES):
            return self.app(environ, start_response)  # Django answers 413 / 400
        started = time.perf_counter()
        body = environ["wsgi.input"].read(length)
        # Whoever answers from here on, Django can still read the body.
        environ["wsgi.input"] = io.BytesIO(body)
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else _request_id()
        token = request_id_var.set(request_id)
        # One server span per delivery (no instrumentation covers this path); never one per event, and
        # none for its calls: the hot path pays for one span, not for the wrappers of every query.
        span = tracing.span_from(
            "POST /api/v1/webhooks/{slug}",
            environ.get("HTTP_TRACEPARENT"),
            kind=SpanKind.SERVER,
            carrier=match["slug"],
        )
        try:
            with span as current, tracing.untraced():
                answer = self._serve(match["slug"], environ, body)
                if answer is not None:
                    current.set_attribute("http.response.status_code", answer[0])
        except Exception:
            log.exception("webhook fast path failed; handing the delivery to Django")
            connection.close()  # a broken connection is not reused; Django opens a fresh one
            answer = None
        finally:
            request_id_var.reset(token)
            # Most deliveries never touch the database on this thread (the group
            # commit writer stores them); one that did gives its connection back
            # (to the pool), as Django does at the end of a request.
            if connection.connection is not None:
                connection.close()
        if answer is None:
            return self.app(environ, start_response)
        status, payload, limit_headers = answer
        content_type = "application/json" if status == 200 else PROBLEM_CONTENT_TYPE
        data = orjson.dumps(payload)
        # The same series as Django's answers on this route (the canary analysis reads them).
        http_observe(WEBHOOK_ENDPOINT, "POST", status, time.perf_counter() - started)
        start_response(
            f"{status} {'OK' if status == 200 else _reason(status)}",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(data))),
                ("X-Request-ID", request_id),
                *_SECURITY_HEADERS,
                *limit_headers.items(),
            ],
        )
        return [data]

    def _serve(
        self, slug: str, environ: dict[str, Any], body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:

        now = timezone.now()
        facts = self._carrier_facts(slug)
        if facts is None:
            return None
        headers = {
            "webhook-id": environ.get("HTTP_WEBHOOK_ID", ""),
            "webhook-timestamp": environ.get("HTTP_WEBHOOK_TIMESTAMP", ""),
            "webhook-signature": environ.get("HTTP_WEBHOOK_SIGNATURE", ""),
        }
        try:
            webhook_id = webhook_verify(
                secrets=facts.valid_secrets(now),
                headers=headers,
                body=body,
                now=now,
                tolerance_seconds=int(settings.WEBHOOK_TOLERANCE_SECONDS),
            )
        except WebhookVerificationError:
            return None  # the view answers 401 (and its per-address limit applies)
        try:
            envelope = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(envelope, dict) or envelope.get("type") != "telemetry" or not _ENVELOPE.issuperset(envelope):
            return None
        if may_hold_unstorable(body) and unstorable_find(envelope, per_item=delivery_per_item(envelope)) is not None:
            return None  # the view answers 400 and points at the string; a batch's own events are judged one by one
        stamp = envelope.get("timestamp")
        if stamp is not None and not _is_timestamp(stamp):
            return None  # the view's envelope validation answers
        policy = webhook_policy()
        decision = limiter().hit(policy, f"carrier:{facts.carrier.pk}") if policy is not None else None
        limit_headers = ratelimit_headers([decision] if decision is not None else [])
        if decision is not None and not decision.allowed:
            limit_headers["Retry-After"] = str(decision.retry_after)
            return (
                429,
                problem_body(
                    status=429,
                    code="rate-limited",
                    detail=f"More than {decision.policy.rate.limit} deliveries in a minute from this carrier; "
                    f"retry after {decision.retry_after} s.",
                    instance=environ.get("PATH_INFO", ""),
                    **_violated(decision.policy.name),
                ),
                limit_headers,
            )
        material = {"scheme": "standard-webhooks-v1", **headers, "body_sha256": hashlib.sha256(body).hexdigest()}
        status, payload = telemetry_delivery(
            carrier=facts.carrier,
            webhook_id=webhook_id,
            data=envelope.get("data"),
            material=material,
            instance=environ.get("PATH_INFO", ""),
            meta=environ,
            cache=self.missions,
            group=self.group,
        )
        return status, payload, limit_headers

    def _carrier_facts(self, slug: str) -> CarrierFacts | None:
        facts = self._facts.get(slug)
        if facts is not None and time.monotonic() - facts.fetched_at < FACTS_TTL_SECONDS:
            return facts
        from django.db.models import Q

        carrier = Carrier.objects.filter(slug=slug).first()
        if carrier is None:
            return None  # the view answers 404; not cached, so a new carrier works at once
        now = timezone.now()
        secrets = tuple(
            WebhookSecret.objects.filter(carrier=carrier, valid_from__lte=now)
            .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
            .values_list("secret", "valid_until")
        )
        fresh = CarrierFacts(carrier=carrier, secrets=secrets, fetched_at=time.monotonic())
        if facts is None:  # the first delivery from this carrier in this process
            self.missions.preload(carrier.pk)
        with self._lock:
            if len(self._facts) > 10_000:
                self._facts.clear()
            self._facts[slug] = fresh
        return fresh


_ENVELOPE = frozenset({"type", "timestamp", "data"})

# Request ids: a random per-process prefix and a counter, 32 hex digits like
# Django's uuid4 ids, without a read of the system's random source per request.
_ID_PREFIX = uuid.uuid4().hex[:16]
_id_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


def _request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def _violated(policy: str) -> dict[str, Any]:
    # The draft's problem member (section 5.1), whose name is no Python keyword.
    return {"violated-policies": [policy]}


def _is_timestamp(value: Any) -> bool:
    # The envelope's `timestamp` as the view reads it (RFC 3339); anything else is the view's to refuse.
    if not isinstance(value, str) or len(value) > 40:
        return False
    try:
        rfc3339_parse(value)
    except (ValueError, OverflowError):
        return False
    return True


def _reason(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase
