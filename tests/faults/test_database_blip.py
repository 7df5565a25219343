"""PostgreSQL connections lost under live servers: ``pg_terminate_backend`` on the server's connections.

Only the test's own database is touched (the ``test_<name>`` database this
test runs on; the test's own connection is spared). Two faults:

* **a blip**: the server's connections are terminated again and again while
  carriers send telemetry batches; every answer is a 202 or a 503
  problem+json with ``Retry-After`` (never a 500), the 503s are retried with
  the same ``Idempotency-Key``, and in the end every acknowledged event is
  stored exactly once;
* **an outage**: new connections are refused for a while (``ALLOW_CONNECTIONS
  false``) and the open ones terminated: the API answers 503 problem+json with
  ``Retry-After``, console pages a calm "temporarily unavailable" page (503),
  ``/readyz`` 503 with the database ``down``; once connections are allowed
  again the same server process answers normally, without a restart.

The servers run with the connection pool on (``DB_POOL``), as in production.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection

from missions.models import Carrier, Mission
from tests.faults.dependencies import (
    Sender,
    app_server,
    assert_unavailable_problem,
    console_session,
    en_route_mission,
    readyz,
    require_postgres,
    stored_ids,
    telemetry_event,
    wait_until,
)

pytestmark = [
    pytest.mark.services,
    pytest.mark.server_process,
    pytest.mark.django_db(transaction=True),
]

SENDERS = 3
EVENTS_PER_BATCH = 20
BLIPS = 4
# The pool as in production, with a short wait for a connection (production: 10 s) to keep the test fast.
SERVER_ENV = {"DB_POOL": "1", "DB_POOL_MIN": "2", "DB_POOL_MAX": "8", "DB_POOL_TIMEOUT": "2", "MQTT_URL": ""}


def server_connections_terminate() -> int:
    """Terminate every other connection to this test database (the server's); how many there were."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


@contextmanager
def database_refusing_connections() -> Iterator[None]:
    """New connections to this test database are refused until the block ends; open ones are terminated."""
    name = connection.ops.quote_name(connection.settings_dict["NAME"])
    # PostgreSQL refuses this from a connection to the database itself: it is said from the
    # maintenance database, as Django's test runner says CREATE DATABASE (only this database changes).
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
    try:
        server_connections_terminate()
        yield
    finally:
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")


class Carrierside:
    """A carrier's sender: posts batches, and retries a 503 with the same key and body until it is a 202."""

    def __init__(self, sender: Sender, mission: Mission) -> None:
        self.sender = sender
        self.mission = mission
        self.acknowledged: list[str] = []
        self.accepted = 0
        self.unavailable = 0
        self.replayed = 0
        self.wrong: list[tuple[int, str]] = []

    def send_one(self, deadline: float) -> None:
        events = [telemetry_event(self.mission) for _ in range(EVENTS_PER_BATCH)]
        key = str(uuid.uuid4())
        while time.monotonic() < deadline:
            response = self.sender.post_batch(events, key)
            if response.status_code == 202:
                body = response.json()
                assert body["accepted"] + body["duplicates"] == len(events), body
                self.accepted += body["accepted"]
                self.replayed += response.headers.get("Idempotent-Replayed") == "true"
                self.acknowledged += [e["event_id"] for e in events]
                return
            if response.status_code == 503:
                try:
                    assert_unavailable_problem(response)
                except AssertionError as exc:
                    self.wrong.append((503, str(exc)[:300]))
                    return
                self.unavailable += 1
                time.sleep(0.2)  # a client honouring Retry-After would wait longer; the test has no time
                continue
            self.wrong.append((response.status_code, response.text[:300]))
            return
        self.wrong.append((0, f"batch {key} not acknowledged before the deadline"))


@pytest.mark.parametrize("kind", ["daphne", "gunicorn"])
def test_a_database_blip_under_load_costs_503s_and_retries_never_a_lost_or_doubled_batch(
    kind: str, tmp_path: Path, carrier_a: Carrier
) -> None:
    require_postgres()
    missions = [en_route_mission(carrier_a) for _ in range(SENDERS)]
    with app_server(kind, tmp_path, **SERVER_ENV) as server:
        sender = Sender.for_carrier(server, carrier_a)
        sides = [Carrierside(Sender(server=server, token=sender.token), m) for m in missions]
        stop = threading.Event()
        errors: list[BaseException] = []

        def run(side: Carrierside) -> None:
            try:
                while not stop.is_set():
                    side.send_one(deadline=time.monotonic() + 60)
            except BaseException as exc:  # reported below: a thread's failure must fail the test
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(side,)) for side in sides]
        for thread in threads:
            thread.start()
        terminated = []
        try:
            for _ in range(BLIPS):
                time.sleep(0.7)
                terminated.append(server_connections_terminate())
            time.sleep(0.7)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=90)
        assert errors == []
        assert all(side.wrong == [] for side in sides), [side.wrong for side in sides]
        assert sum(terminated) > 0, "the blips terminated none of the server's connections"
        assert server.process.poll() is None
        status, body, _ = readyz(server)
        assert status == 200 and body["checks"]["database"]["state"] == "ok", body
        print(
            f"\n{kind}: {sum(len(s.acknowledged) for s in sides)} events acknowledged, "
            f"{sum(s.unavailable for s in sides)} answers 503 then retried, {sum(terminated)} connections terminated"
        )
    for side in sides:
        stored = stored_ids(side.mission)
        assert sorted(stored) == sorted(side.acknowledged)  # acknowledged == stored, each once
        assert side.accepted == len(side.acknowledged)  # no batch counted twice


@pytest.mark.parametrize("kind", ["daphne", "gunicorn"])
def test_with_the_database_away_the_api_and_console_answer_503_and_the_server_recovers_by_itself(
    kind: str, tmp_path: Path, carrier_a: Carrier, dispatcher: User
) -> None:
    require_postgres()
    mission = en_route_mission(carrier_a)
    with app_server(kind, tmp_path, **SERVER_ENV) as server:
        sender = Sender.for_carrier(server, carrier_a)
        console = console_session(server, dispatcher)
        pid = server.process.pid
        events = [telemetry_event(mission) for _ in range(EVENTS_PER_BATCH)]
        key = str(uuid.uuid4())
        with database_refusing_connections():
            refused = sender.post_batch(events, key)
            body = assert_unavailable_problem(refused)
            assert body["type"].endswith("/database-unavailable")
            assert_unavailable_problem(sender.get(f"/api/v1/missions/{mission.pk}"))
            page = console.get(f"{server.url}/shipments/", timeout=30, allow_redirects=False)
            assert page.status_code == 503, page.text[:500]
            assert "Temporarily unavailable" in page.text and "Traceback" not in page.text
            assert int(page.headers["Retry-After"]) > 0
            status, ready, headers = readyz(server)
            assert status == 503 and ready["checks"]["database"]["state"] == "down", ready
            assert int(headers["Retry-After"]) > 0
            assert server.process.poll() is None
        # Connections are allowed again: the same process serves again, by itself.
        wait_until(lambda: readyz(server)[0] == 200, "/readyz to be 200 again")
        retried = sender.post_batch(events, key)
        assert retried.status_code == 202, retried.text
        assert retried.json()["accepted"] == len(events)
        assert console.get(f"{server.url}/shipments/", timeout=30, allow_redirects=False).status_code == 200
        assert server.process.pid == pid and server.process.poll() is None
    assert sorted(stored_ids(mission)) == sorted(e["event_id"] for e in events)
