"""Health of the processes and dependencies: heartbeats, leases, ``/readyz``, gauges, and 503s.

* ``/healthz`` (liveness, ``tms_console.views``) answers while the process and its
  database answer; ``/readyz`` reports every dependency with its state and age:
  the database and Redis decide readiness (a web process cannot serve without
  them); the broker, MQTT, beat and the worker pipeline are reported and turn the
  answer's ``status`` to ``degraded`` without taking the web process out of rotation.
* A lost database or Redis connection is a 503 with ``Retry-After``: problem+json
  on the API, a calm "temporarily unavailable" page in the console (never a 500 page).
* ``lease_acquire`` gives one holder at a time a named lease with an expiry, with
  one conditional UPDATE (or INSERT) so that two processes cannot both win.
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg
import redis
from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views import defaults
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tms_console.dual_middleware import DualModeMiddleware
from tms_console.models import Lease, ProcessHeartbeat
from tms_console.problem import PROBLEM_CONTENT_TYPE, problem_body

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
CHECK_TIMEOUT_SECONDS = 1.0


# --- Heartbeats --------------------------------------------------------------------


def heartbeat_record(*, name: str, detail: dict[str, Any] | None = None) -> None:
    """Note that process ``name`` is alive now (one upsert)."""
    ProcessHeartbeat.objects.update_or_create(name=name, defaults={"seen_at": timezone.now(), "detail": detail or {}})


def heartbeat_ages(*, now: datetime | None = None) -> dict[str, float]:
    """Seconds since each process was last seen."""
    now = now or timezone.now()
    return {
        name: (now - seen).total_seconds() for name, seen in ProcessHeartbeat.objects.values_list("name", "seen_at")
    }


def stale_after_seconds() -> float:
    """A heartbeat older than this means the process (or the path to it) is down."""
    return float(settings.SAFETY_STALE_SECONDS)


def pipeline_state(*, now: datetime | None = None) -> dict[str, str]:
    """``ok`` / ``stale`` / ``unknown`` for beat and the worker pipeline (beat -> broker -> worker)."""
    ages = heartbeat_ages(now=now)
    limit = stale_after_seconds()
    return {
        name: "unknown" if name not in ages else ("ok" if ages[name] <= limit else "stale")
        for name in ("beat", "worker")
    }


# --- Leases ------------------------------------------------------------------------


def lease_acquire(*, name: str, holder: str, seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``holder``; False while someone else holds it."""
    now = timezone.now()
    until = now + timedelta(seconds=seconds)
    taken = Lease.objects.filter(Q(holder=holder) | Q(expires_at__lt=now), name=name).update(
        holder=holder, expires_at=until
    )
    if taken:
        return True
    try:
        with transaction.atomic():
            Lease.objects.create(name=name, holder=holder, expires_at=until)
    except IntegrityError:
        return False  # it exists and is held by someone else
    return True


def lease_release(*, name: str, holder: str) -> None:
    Lease.objects.filter(name=name, holder=holder).delete()


# --- Dependency checks -------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    state: str  # ok, down, stale, unknown, off
    required: bool
    detail: str = ""
    age_seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"state": self.state, "required": self.required}
        if self.detail:
            body["detail"] = self.detail
        if self.age_seconds is not None:
            body["age_seconds"] = round(self.age_seconds, 1)
        return body


def _timed(name: str, required: bool, probe: Callable[[], str]) -> Check:
    started = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # a check reports its dependency's failure, it never raises
        return Check(name, "down", required, f"{type(exc).__name__}: {exc}"[:200])
    return Check(name, "ok", required, detail or f"{(time.perf_counter() - started) * 1000:.1f} ms")


def _database() -> str:
    pool = getattr(connection, "pool", None)  # psycopg's pool (PostgreSQL with DB_POOL)
    if pool is not None:
        # Within the check's own time limit, not the pool's (DB_POOL_TIMEOUT): a probe must answer fast.
        pool.open()
        with pool.connection(timeout=CHECK_TIMEOUT_SECONDS) as pooled:
            pooled.execute("SELECT 1")
        return ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return ""


def _redis_ping(url: str) -> str:
    client = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
    return ""


def _tcp(url: str, default_port: int) -> str:
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), CHECK_TIMEOUT_SECONDS):
        return ""


def _filesystem_broker() -> str:
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in", ""))
    if not folder.is_dir():
        raise OSError(f"the broker folder {folder} is missing")
    return ""


def _broker() -> Check:
    url = str(settings.CELERY_BROKER_URL)
    if url.startswith("filesystem://"):
        return _timed("broker", False, _filesystem_broker)
    if url.startswith(("redis://", "rediss://")):
        return _timed("broker", False, lambda: _redis_ping(url))
    if url.startswith(("amqp://", "pyamqp://")):
        return _timed("broker", False, lambda: _tcp(url, 5672))
    return Check("broker", "unknown", False, url.split("://", 1)[0])


def checks() -> list[Check]:
    found = [_timed("database", True, _database)]
    redis_url = str(getattr(settings, "REDIS_URL", "") or "")
    found.append(_timed("redis", True, lambda: _redis_ping(redis_url)) if redis_url else Check("redis", "off", False))
    found.append(_broker())
    mqtt_url = str(getattr(settings, "MQTT_URL", "") or "")
    found.append(_timed("mqtt", False, lambda: _tcp(mqtt_url, 1883)) if mqtt_url else Check("mqtt", "off", False))
    try:
        ages = heartbeat_ages()
    except DatabaseError:
        ages = {}
    limit = stale_after_seconds()
    for name in ("beat", "worker", "mqtt-bridge"):
        age = ages.get(name)
        if age is None:
            state = "off" if name == "mqtt-bridge" and not mqtt_url else "unknown"
            found.append(Check(name, state, False))
        else:
            found.append(Check(name, "ok" if age <= limit else "stale", False, age_seconds=age))
    return found


def readiness() -> tuple[int, dict[str, Any]]:
    found = checks()
    ready = all(c.state == "ok" for c in found if c.required)
    degraded = any(c.state in ("down", "stale", "unknown") for c in found if not c.required)
    status = "ok" if ready and not degraded else ("degraded" if ready else "unavailable")
    body = {"status": status, "checks": {c.name: c.as_json() for c in found}}
    return (200 if ready else 503), body


def readyz(request: HttpRequest) -> HttpResponse:
    """``GET /readyz``: each dependency's state (and heartbeat age); 503 when a required one is down."""
    status, body = readiness()
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    if status == 503:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DependencyCollector(Collector):
    """``tms_dependency_up`` per dependency and ``tms_process_heartbeat_age_seconds`` per process."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tms_dependency_up", "1 when the dependency answers (or is fresh), else 0", labels=["dependency"]
        )
        age = GaugeMetricFamily(
            "tms_process_heartbeat_age_seconds", "Seconds since the process was last seen", labels=["process"]
        )
        for check in checks():
            if check.state == "off":
                continue
            up.add_metric([check.name], 1.0 if check.state == "ok" else 0.0)
            if check.age_seconds is not None:
                age.add_metric([check.name], check.age_seconds)
        yield up
        yield age


# --- A lost database (or Redis) is a 503, not a 500 -------------------------------------

_UNAVAILABLE = {
    "database": "The database is unreachable; nothing was changed. Try again shortly.",
    "redis": "Redis (cache and messaging) is unreachable, and this request needs it. Try again shortly.",
}


# Django's wrapped errors, and the driver's own from code that uses a raw psycopg cursor (COPY).
_DATABASE_LOST = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def database_connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` says the database connection is gone (or the server refused or ended it)."""
    return isinstance(exc, _DATABASE_LOST)


def _dependency_lost(exc: BaseException) -> str | None:
    """The dependency whose connection ``exc`` says is lost (``database`` or ``redis``), else None."""
    if database_connection_lost(exc):
        return "database"
    if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        return "redis"
    return None


def unavailable_response(request: HttpRequest, dependency: str = "database") -> HttpResponse:
    """503 with Retry-After: problem+json under /api/ and /oauth2/, a calm page in the console."""
    response: HttpResponse
    if request.path.startswith(("/api/", "/oauth2/")):
        body = problem_body(
            status=503,
            code=f"{dependency}-unavailable",
            detail=_UNAVAILABLE[dependency],
            instance=request.path,
        )
        response = JsonResponse(body, status=503, content_type=PROBLEM_CONTENT_TYPE)
    else:
        # Rendered without the request's context: the user and roles would need the database.
        page = render_to_string(
            "unavailable.html", {"retry_after": RETRY_AFTER_SECONDS, "path": request.path, "dependency": dependency}
        )
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware(DualModeMiddleware):
    """A view that lost its database connection answers 503, not 500 (see ``server_error`` for the rest).

    Only ``process_exception`` does anything; Django always calls that one synchronously.
    """

    def call(self, request: HttpRequest) -> HttpResponseBase:
        return self.respond(request)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        return await self.arespond(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # A lost Redis connection too: what cannot be served without it is a 503 as well.
        dependency = _dependency_lost(exception)
        if dependency is None:
            return None
        log.error(
            "%s unavailable",
            dependency,
            exc_info=exception,
            extra={"event": f"{dependency}.unavailable", "path": request.path},
        )
        return unavailable_response(request, dependency)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: an error raised in a middleware (the session or user lookup) never reaches
    ``process_exception``; Django calls this inside its except clause, so the exception is at hand."""
    exception = sys.exc_info()[1]
    dependency = _dependency_lost(exception) if exception is not None else None
    if dependency is not None:
        return unavailable_response(request, dependency)
    return defaults.server_error(request)
