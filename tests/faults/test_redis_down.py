"""Redis killed (SIGKILL) under live servers, a worker and beat, then started again on the same port.

What the README's "Operations: when a dependency fails" promises for Redis down:

* telemetry batches are still stored in PostgreSQL, every acknowledged event
  exactly once; the rate limits fail open and ``tms_ratelimit_local_fallback``
  says so on ``/metrics``;
* ``/readyz`` answers 503 with Redis ``down`` (and why), and 200 again once it
  is back, without a restart;
* nothing answers 500: what cannot be served without Redis is a 503
  problem+json with ``Retry-After``;
* with the broker (the same Redis) down, the web process's safety ticker opens
  a "monitoring degraded" incident and runs gap detection itself: each vehicle
  that falls silent during the outage is alarmed exactly once, also after
  Redis, beat and the worker are back.

Each test runs its own ``redis-server``; the machine's shared Redis is never touched.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import User

from missions.choices import MissionStatus
from missions.evidence.services import AttestationSubject, attestation_create, checkpoint_issue
from missions.models import Carrier, EventDelivery, Mission, MissionException
from missions.models.telemetry import TelemetryWindowEvent
from tests.conftest import verified_client
from tests.factories import MissionFactory, VehicleFactory
from tests.faults.dependencies import (
    Sender,
    app_server,
    assert_unavailable_problem,
    metric,
    metrics,
    own_redis,
    readyz,
    redis_url,
    require_postgres,
    telemetry_event,
    wait_until,
)
from tests.server_process import ServerProcess

pytestmark = [
    pytest.mark.services,
    pytest.mark.server_process,
    pytest.mark.django_db(transaction=True),
]

BATCHES_DURING_OUTAGE = 4
EVENTS_PER_BATCH = 25


def en_route_mission(carrier: Carrier) -> Mission:
    return MissionFactory(carrier=carrier, vehicle=VehicleFactory(carrier=carrier), status=MissionStatus.EN_ROUTE)


def stored_ids(mission: Mission) -> set[str]:
    return {str(e) for e in TelemetryWindowEvent.objects.filter(mission=mission).values_list("event_id", flat=True)}


def evidence_logged(mission: Mission) -> int:
    """One attestation in the evidence log and a checkpoint over it: the proofs endpoints have something to prove."""
    attestation_create(
        kind="mission-assignment",
        subject=AttestationSubject("mission", mission.pk, mission.pk),
        statement={
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": f"mission/{mission.pk}", "digest": {"sha256": "0" * 64}}],
            "predicateType": "https://tms.example/faults/v1",
            "predicate": {},
        },
    )
    checkpoint = checkpoint_issue()
    assert checkpoint is not None
    return int(checkpoint.tree_size)


def send(sender: Sender, mission: Mission, acknowledged: set[str], *, n: int = EVENTS_PER_BATCH) -> requests.Response:
    """One batch; the events of a 202 are acknowledged (each is accepted or refused on its own: none here)."""
    events = [telemetry_event(mission) for _ in range(n)]
    response = sender.post_batch(events, key=str(uuid.uuid4()))
    if response.status_code == 202:
        body = response.json()
        assert body["accepted"] + body.get("duplicates", 0) == n, body
        acknowledged.update(e["event_id"] for e in events)
    return response


def never_a_500(server: ServerProcess, sender: Sender, mission: Mission, console: requests.Session, size: int) -> None:
    """Every endpoint answers as it would with Redis up, or a 503 problem with Retry-After; no 500."""
    api_paths = [
        "/api/v1/capabilities",
        f"/api/v1/missions/{mission.pk}",
        "/api/v1/events?after=0",
        "/api/v1/tenders",
        "/api/v1/evidence/checkpoint",
        f"/api/v1/evidence/proofs/inclusion?index=0&tree_size={size}",
        f"/api/v1/evidence/proofs/consistency?first=1&second={size}",
    ]
    for path in api_paths:
        response = sender.get(path)
        if response.status_code == 503:
            assert_unavailable_problem(response)
        else:
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
    for path in ["/", "/shipments/", "/incidents/", f"/missions/{mission.pk}/", "/sla/dashboard/"]:
        response = console.get(f"{server.url}{path}", timeout=30, allow_redirects=False)
        assert response.status_code in (200, 503), (path, response.status_code, response.text[:300])
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) > 0
            assert "Traceback" not in response.text


def console_session(server: ServerProcess, user: User) -> requests.Session:
    """A browser session of a verified console user (the session lives in the database)."""
    client = verified_client(user)
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value, domain="127.0.0.1")
    assert session.get(f"{server.url}/shipments/", timeout=30, allow_redirects=False).status_code == 200
    return session


@pytest.mark.parametrize("kind", ["daphne", "gunicorn"])
def test_redis_killed_telemetry_is_stored_limits_fail_open_and_readyz_tells(
    kind: str, tmp_path: Path, carrier_a: Carrier, dispatcher: User
) -> None:
    require_postgres()
    mission = en_route_mission(carrier_a)
    size = evidence_logged(mission)
    acknowledged: set[str] = set()
    with own_redis(tmp_path) as redis:
        url = redis_url(redis)
        env = {
            "REDIS_URL": url,
            "RATELIMIT_REDIS_URL": url,
            "CELERY_BROKER_URL": url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "MQTT_URL": "",
        }
        with app_server(kind, tmp_path, **env) as server:
            sender = Sender.for_carrier(server, carrier_a)
            console = console_session(server, dispatcher)
            assert send(sender, mission, acknowledged).status_code == 202
            status, body, _ = readyz(server)
            assert status == 200 and body["checks"]["redis"]["state"] == "ok", body
            page = metrics(server)
            assert metric(page, "tms_ratelimit_local_fallback") == 0.0
            assert metric(page, "tms_dependency_up", dependency="redis") == 1.0

            redis.kill()

            # Telemetry is stored: the limiter decides in process memory (fail open).
            for _ in range(BATCHES_DURING_OUTAGE):
                response = send(sender, mission, acknowledged)
                assert response.status_code == 202, (response.status_code, response.text[:500], server.log_tail())
            page = metrics(server)
            assert metric(page, "tms_ratelimit_local_fallback") == 1.0
            assert metric(page, "tms_dependency_up", dependency="redis") == 0.0
            # /readyz: not ready, with the dependency's state and why.
            status, body, headers = readyz(server)
            assert status == 503, body
            assert int(headers["Retry-After"]) > 0
            assert body["status"] == "unavailable"
            assert body["checks"]["redis"]["state"] == "down" and body["checks"]["redis"]["required"] is True
            assert body["checks"]["redis"]["detail"]
            assert body["checks"]["database"]["state"] == "ok"
            never_a_500(server, sender, mission, console, size)
            # A write whose follow-up work goes through the broker: stored, its delivery kept for a retry.
            reported = sender.post(
                f"/api/v1/missions/{mission.pk}/exceptions",
                {"kind": "ota_failure", "detail": "OTA rollout failed while Redis was down"},
                key=str(uuid.uuid4()),
            )
            assert reported.status_code == 201, (reported.status_code, reported.text[:500])
            assert MissionException.objects.filter(pk=reported.json()["id"]).exists()
            assert EventDelivery.objects.filter(event__action="mission.exception").exists()
            assert server.process.poll() is None, "the server must stay up while Redis is down"

            redis.start()  # the same port, empty (no persistence)

            wait_until(lambda: readyz(server)[0] == 200, "/readyz to be 200 again")
            assert readyz(server)[1]["checks"]["redis"]["state"] == "ok"

            def limits_shared_again() -> bool:
                assert send(sender, mission, acknowledged, n=1).status_code == 202
                return metric(metrics(server), "tms_ratelimit_local_fallback") == 0.0

            wait_until(limits_shared_again, "the limiter to use Redis again", every=1.0)
            never_a_500(server, sender, mission, console, size)
            assert server.process.poll() is None
    # Acknowledged == stored, each once (the window's key is the event id).
    assert stored_ids(mission) == acknowledged
