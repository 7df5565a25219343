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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User
from django.utils import timezone

from missions.choices import ExceptionKind
from missions.evidence.services import AttestationSubject, attestation_create, checkpoint_issue
from missions.models import Carrier, EventDelivery, Mission, MissionException
from missions.telemetry.ingest import ingest_events
from runbooks.choices import IncidentKind, IncidentStatus
from runbooks.models import Incident
from tests.faults.dependencies import (
    TIMEOUT,
    Sender,
    app_server,
    assert_unavailable_problem,
    base_env,
    console_session,
    en_route_mission,
    metric,
    metrics,
    own_redis,
    processes,
    readyz,
    redis_url,
    require_postgres,
    stored_ids,
    telemetry_event,
    wait_until,
)
from tests.runbooks.pager import PagerReceiver
from tests.servers import AppServer
from tms_console.health import heartbeat_ages
from tms_console.ratelimit import LEASE_MAX_UNITS

pytestmark = [
    pytest.mark.services,
    pytest.mark.server_process,
    pytest.mark.django_db(transaction=True),
]

# More requests than a process may have leased from the limit store ahead: the limiter must ask Redis.
BATCHES_DURING_OUTAGE = LEASE_MAX_UNITS + 4
EVENTS_PER_BATCH = 10


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


def never_a_500(server: AppServer, sender: Sender, mission: Mission, console: requests.Session, size: int) -> None:
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
    for path in ["/", "/shipments/", "/incidents/", f"/missions/{mission.pk}/", "/sla/"]:
        response = console.get(f"{server.url}{path}", timeout=30, allow_redirects=False)
        assert response.status_code in (200, 503), (path, response.status_code, response.text[:300])
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) > 0
            assert "Traceback" not in response.text


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
    assert set(stored_ids(mission)) == acknowledged


# --- The safety loops while the broker (the same Redis) is down ------------------------------------

HEARTBEAT_SECONDS = 1  # beat's heartbeat task (through the broker) and its own
STALE_SECONDS = 3  # a heartbeat older than this is down (production: 30 s)
GAP_SECONDS = 4  # silence before lost comms (production: 60 s, or the contract's)
REPORT_EVERY = 0.5


def report(missions: list[Mission]) -> None:
    """One telemetry event per vehicle, through the ingest path, now."""
    for mission in missions:
        result = ingest_events(carrier=mission.carrier, events=[telemetry_event(mission)], source="test")
        assert result.accepted == 1, result.rejected


def report_until(missions: list[Mission], done: Callable[[], Any], what: str, seconds: float = TIMEOUT) -> Any:
    """Keep ``missions`` reporting (every half second) until ``done()`` is true."""

    def check() -> Any:
        report(missions)
        return done()

    return wait_until(check, what, seconds, every=REPORT_EVERY)


def lost_comms(mission: Mission) -> int:
    return MissionException.objects.filter(mission=mission, kind=ExceptionKind.LOST_COMMS).count()


def fresh(name: str) -> bool:
    return heartbeat_ages().get(name, 1e9) < STALE_SECONDS


def test_broker_down_the_safety_ticker_alarms_each_silent_vehicle_once_and_hands_back(
    tmp_path: Path, carrier_a: Carrier
) -> None:
    require_postgres()
    pager = PagerReceiver()
    silent = [en_route_mission(carrier_a) for _ in range(2)]  # fall silent during the outage
    steady = en_route_mission(carrier_a)  # reports throughout: never alarmed
    later = en_route_mission(carrier_a)  # falls silent after the recovery: beat's own check must see it
    everyone = [*silent, steady, later]
    with own_redis(tmp_path) as redis:
        url = redis_url(redis)
        env = base_env(
            REDIS_URL=url,
            CELERY_BROKER_URL=url,
            RATELIMIT_REDIS_URL=url,
            CELERY_TASK_ALWAYS_EAGER="0",
            CELERY_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
            SAFETY_STALE_SECONDS=str(STALE_SECONDS),
            SAFETY_TICK_SECONDS="0.5",
            TELEMETRY_GAP_SECONDS_DEFAULT=str(GAP_SECONDS),
            PAGERDUTY_EVENTS_URL=pager.url,
            PAGERDUTY_ROUTING_KEY="faults",
            MQTT_URL="",
        )
        with processes(tmp_path, env) as procs:
            try:
                procs.worker()
                procs.beat()
                report_until(everyone, lambda: fresh("worker") and fresh("beat"), "beat and the worker to report")
                with app_server("daphne", tmp_path, **{**env, "SAFETY_TICKER": "1"}) as server:
                    report_until(everyone, lambda: readyz(server)[1]["checks"]["worker"]["state"] == "ok", "/readyz")

                    killed_at = timezone.now()
                    redis.kill()

                    # Beat records its own heartbeat; the worker's comes through the broker and goes stale.
                    monitoring = report_until(
                        [steady, later],
                        lambda: Incident.objects.filter(kind=IncidentKind.MONITORING_DEGRADED).first(),
                        "the monitoring degraded incident",
                    )
                    assert monitoring.severity == "critical"
                    report_until(
                        [steady, later],
                        lambda: all(lost_comms(m) == 1 for m in silent),
                        "lost comms for each vehicle silent during the outage",
                    )
                    status, body, _ = readyz(server)
                    assert status == 503 and body["checks"]["redis"]["state"] == "down", body
                    assert body["checks"]["worker"]["state"] == "stale"
                    assert body["checks"]["beat"]["state"] == "ok"  # beat is alive; its path to the worker is not
                    # Paged directly over HTTP, without the broker.
                    assert any(
                        c["event_action"] == "trigger" and c["dedup_key"] == f"tms-incident-{monitoring.pk}"
                        for c in pager.calls
                    ), pager.calls

                    restarted_at = timezone.now()
                    redis.start()  # the same port, empty

                    report_until(
                        [steady, later],
                        lambda: Incident.objects.get(pk=monitoring.pk).status == IncidentStatus.RESOLVED,
                        "beat and the worker to be back and the monitoring incident resolved",
                        seconds=120,  # the worker's reconnect back-off, on a loaded CI machine
                    )
                    # A vehicle falling silent now is found by beat and the worker again.
                    report_until([steady], lambda: lost_comms(later) == 1, "beat's gap check to see a new silence")
                    report([steady])
                    assert [lost_comms(m) for m in silent] == [1, 1]  # alarmed once, not again after the recovery
                    # ...and by the safety ticker, while the broker was down.
                    for exception in MissionException.objects.filter(mission__in=silent):
                        assert killed_at < exception.created_at < restarted_at
                    assert lost_comms(steady) == 0
                    assert Incident.objects.filter(kind="lost_comms", mission__in=silent).count() == 2
                    assert Incident.objects.filter(kind=IncidentKind.MONITORING_DEGRADED).count() == 1
                    assert readyz(server)[0] == 200
                    assert server.process.poll() is None
                    assert procs.alive("worker"), procs.log_tail("worker")
                    assert procs.alive("beat"), procs.log_tail("beat")
            except BaseException:
                print(procs.logs())
                raise
            finally:
                pager.close()
