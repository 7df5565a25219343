"""Heartbeats, leases, /readyz, dependency gauges, and 503 instead of 500 when the database is gone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from tms_console import health
from tms_console.models import ProcessHeartbeat

pytestmark = pytest.mark.django_db


def test_readyz_reports_each_dependency_and_is_degraded_without_heartbeats(settings: Any) -> None:
    settings.MQTT_URL = ""
    response = Client().get("/readyz")
    assert response.status_code == 200  # the database answers: the web process can serve
    body = response.json()
    assert body["checks"]["database"]["state"] == "ok" and body["checks"]["database"]["required"] is True
    assert body["checks"]["beat"]["state"] == "unknown"
    assert body["checks"]["worker"]["state"] == "unknown"
    assert body["checks"]["mqtt"]["state"] == "off"
    assert body["status"] == "degraded"
    assert response["Cache-Control"] == "no-store"


def test_readyz_ok_with_fresh_heartbeats_and_stale_after_the_limit(settings: Any) -> None:
    settings.MQTT_URL = ""
    settings.CELERY_BROKER_URL = "memory://"  # a broker the check cannot judge is reported unknown
    health.heartbeat_record(name="beat")
    health.heartbeat_record(name="worker", detail={"hostname": "w1"})
    body = Client().get("/readyz").json()
    assert body["checks"]["beat"]["state"] == "ok" and body["checks"]["beat"]["age_seconds"] < 5
    assert body["checks"]["worker"]["state"] == "ok"
    later = timezone.now() + timedelta(seconds=settings.SAFETY_STALE_SECONDS + 1)
    with time_machine.travel(later):
        assert health.pipeline_state() == {"beat": "stale", "worker": "stale"}
        body = Client().get("/readyz").json()
    assert body["checks"]["worker"]["state"] == "stale"
    assert body["status"] == "degraded"


def test_readyz_is_503_when_a_required_dependency_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> str:
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(health, "_database", down)
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response["Retry-After"] == str(health.RETRY_AFTER_SECONDS)
    assert response.json()["checks"]["database"]["state"] == "down"
    assert "could not connect" in response.json()["checks"]["database"]["detail"]


def test_dependency_gauges_on_metrics() -> None:
    health.heartbeat_record(name="worker")
    text = Client().get("/metrics").content.decode()
    assert 'tms_dependency_up{dependency="database"} 1.0' in text
    assert 'tms_dependency_up{dependency="worker"} 1.0' in text
    assert 'tms_process_heartbeat_age_seconds{process="worker"}' in text


def test_a_lease_has_one_holder_until_it_expires() -> None:
    assert health.lease_acquire(name="job", holder="a", seconds=10)
    assert health.lease_acquire(name="job", holder="a", seconds=10)  # renewed by its holder
    assert not health.lease_acquire(name="job", holder="b", seconds=10)
    with time_machine.travel(timezone.now() + timedelta(seconds=11)):
        assert health.lease_acquire(name="job", holder="b", seconds=10)  # a dead holder's lease runs out
        assert not health.lease_acquire(name="job", holder="a", seconds=10)
    health.lease_release(name="job", holder="b")
    assert health.lease_acquire(name="job", holder="a", seconds=10)


def test_heartbeat_is_an_upsert() -> None:
    health.heartbeat_record(name="mqtt-bridge", detail={"n": 1})
    health.heartbeat_record(name="mqtt-bridge", detail={"n": 2})
    assert ProcessHeartbeat.objects.get(name="mqtt-bridge").detail == {"n": 2}


def test_the_celery_heartbeat_task_records_the_worker() -> None:
    from tms_console.celery import heartbeat

    heartbeat.delay()  # eager in tests: runs here as a worker would
    assert ProcessHeartbeat.objects.filter(name="worker").exists()


@pytest.mark.parametrize("path", ["/api/v1/tenders", "/oauth2/token"])
def test_a_lost_database_is_a_503_problem_on_the_api(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.handlers import base

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    # The view itself fails as if the connection dropped mid-request.
    monkeypatch.setattr(base.BaseHandler, "resolve_request", lambda self, request: (lost, (), {}))
    response = Client(raise_request_exception=False).get(path)
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["status"] == 503 and response.json()["type"].endswith("database-unavailable")
    assert response["Retry-After"] == str(health.RETRY_AFTER_SECONDS)


def test_a_lost_database_in_a_middleware_is_a_calm_console_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.contrib.sessions.backends import db

    def lost(self: Any) -> Any:
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(db.SessionStore, "load", lost)
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = "x" * 32
    response = client.get("/shipments/")
    assert response.status_code == 503
    assert b"Temporarily unavailable" in response.content
    assert b"Traceback" not in response.content
    assert response["Retry-After"] == str(health.RETRY_AFTER_SECONDS)


@pytest.mark.parametrize("path", ["/api/v1/tenders", "/shipments/"])
def test_a_lost_redis_connection_is_a_503_not_a_500(
    path: str, monkeypatch: pytest.MonkeyPatch, dispatcher: Any
) -> None:
    """What cannot be served without Redis is a 503 with Retry-After (tests/faults/test_redis_down.py live)."""
    import redis
    from django.core.handlers import base

    from tests.conftest import verified_client

    client = verified_client(dispatcher)
    client.raise_request_exception = False

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(base.BaseHandler, "resolve_request", lambda self, request: (lost, (), {}))
    response = client.get(path)
    assert response.status_code == 503
    assert response["Retry-After"] == str(health.RETRY_AFTER_SECONDS)
    if path.startswith("/api/"):
        assert response["Content-Type"].startswith("application/problem+json")
        assert response.json()["type"].endswith("redis-unavailable")
    else:
        assert b"Temporarily unavailable" in response.content and b"Redis" in response.content
