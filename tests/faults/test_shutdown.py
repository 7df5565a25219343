"""SIGTERM to every long-running process: each exits within its drain time, and nothing acknowledged is lost.

Real processes on the test database (PostgreSQL and Redis with the services,
a SQLite file embedded): daphne and gunicorn under concurrent telemetry
batches (``tests.servers``), the MQTT bridge against a Mosquitto of the
test's own on a free port, a Celery worker and beat (``tests.workers``), and
the simulators. Each process is sent SIGTERM while it works, and must exit
within its stated drain time (README, "Graceful shutdown") plus
``EXIT_SLACK_SECONDS`` for the operating system to reap it; what it
acknowledged must be stored in full, what it did not must be either stored
whole or not at all, and refused cleanly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from missions.events import Actor
from missions.models import Carrier, Mission, TelemetryWindowEvent
from missions.partner import services as partner_services
from tests.conftest import require_service
from tests.factories import CarrierFactory, MissionFactory
from tests.servers import GUNICORN_PROBLEM_WORKER, AppServer, free_port, server_env, start_app_server
from tests.workers import beat_start, worker_env, worker_start
from tms_console.shutdown import EXIT_DRAIN_EXPIRED

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DRAIN_SECONDS = 6.0
# Time the operating system may take to reap a process that exited on time, on a busy 2-core machine.
EXIT_SLACK_SECONDS = 1.5
BATCH_EVENTS = 200
SENDERS = 6


def exit_seconds(process: subprocess.Popen[Any], *, limit: float) -> float:
    """SIGTERM ``process`` and return how long it took to exit (failing the test past ``limit``)."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=limit + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        pytest.fail(f"still running {limit + 30:.0f} s after SIGTERM")
    return time.monotonic() - started


def log_events(path: Path, event: str) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            found.append(json.loads(line))
    return found


def wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


# --- daphne and gunicorn under load -------------------------------------------------------------------


@dataclass
class Batch:
    """One telemetry batch sent, and what came back."""

    event_ids: list[str]
    started: float
    ended: float = 0.0
    status: int | None = None  # None: no HTTP answer (refused, reset)
    error: str = ""
    content_type: str = ""
    body: Any = None


@dataclass
class Load:
    """Threads posting telemetry batches as fast as they are answered, until told to stop."""

    url: str
    token: str
    missions: list[Mission]
    batches: list[Batch] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for mission in self.missions:
            thread = threading.Thread(target=self._send, args=(mission,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _send(self, mission: Mission) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            event_ids, body = batch_body(mission, BATCH_EVENTS)
            batch = Batch(event_ids=event_ids, started=time.monotonic())
            try:
                response = session.post(
                    f"{self.url}/api/v1/telemetry/batch",
                    data=body,
                    headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
                    timeout=60,
                )
            except requests.RequestException as exc:
                batch.error = "refused" if "Connection refused" in str(exc) else f"{type(exc).__name__}: {exc}"
                session.close()
                session = requests.Session()
                time.sleep(0.05)
            else:
                batch.status = response.status_code
                batch.content_type = response.headers.get("Content-Type", "")
                batch.body = response.json() if response.content else None
            batch.ended = time.monotonic()
            self.batches.append(batch)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=90)


def connect_refused(url: str) -> bool:
    """True when a new connection to ``url`` is refused (nothing listens there any more)."""
    host, port = url.removeprefix("http://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def batch_body(mission: Mission, events: int) -> tuple[list[str], bytes]:
    now = timezone.now()
    batch = [
        {
            "event_id": str(uuid.uuid4()),
            "mission_id": mission.pk,
            "vehicle_id": mission.vehicle.external_id,
            "ts": (now - timezone.timedelta(milliseconds=index)).isoformat(),
            "position": {"lat": 32.5, "lon": -96.5},
        }
        for index in range(events)
    ]
    return [e["event_id"] for e in batch], json.dumps({"events": batch}).encode()


def slow_upload(
    server: AppServer, token: str, mission: Mission, *, halfway: threading.Event, during: Callable[[], None]
) -> Batch:
    """A batch whose body is half sent, then (once ``halfway`` is set: SIGTERM) finished.

    Between the two, while the server drains, ``during`` runs.
    """
    event_ids, body = batch_body(mission, 10)
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /api/v1/telemetry/batch HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nIdempotency-Key: {uuid.uuid4()}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    batch = Batch(event_ids=event_ids, started=time.monotonic())
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head + body[: len(body) // 2])
        halfway.wait(timeout=60)
        time.sleep(0.25)  # the server has had the SIGTERM for a moment, and is draining this request
        during()
        sock.sendall(body[len(body) // 2 :])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    batch.ended = time.monotonic()
    if received:
        status_line, _, rest = received.partition(b"\r\n")
        batch.status = int(status_line.split()[1])
        batch.body = json.loads(rest.partition(b"\r\n\r\n")[2] or b"null")
    return batch


def stored(event_ids: list[str]) -> int:
    """How many of these events are stored (counted in chunks: SQLite bounds the parameters of a query)."""
    return sum(
        TelemetryWindowEvent.objects.filter(event_id__in=event_ids[start : start + 5000]).count()
        for start in range(0, len(event_ids), 5000)
    )


def partner_token(server: AppServer, client_id: str, client_secret: str, scope: str) -> str:
    answer = requests.post(
        f"{server.url}/oauth2/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, client_secret),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture
def fleet(db: Any) -> tuple[Carrier, list[Mission], str, str]:
    carrier = CarrierFactory(slug=f"shutdown-{uuid.uuid4().hex[:6]}")
    missions = [MissionFactory(carrier=carrier) for _ in range(SENDERS + 1)]
    issued = partner_services.partner_client_create(
        carrier_id=carrier.pk,
        name="shutdown test",
        scopes=["telemetry:write", "missions:write"],
        actor=Actor.system("test"),
    )
    return carrier, missions, issued.client_id, issued.client_secret


@pytest.mark.server_process
@pytest.mark.parametrize("kind", ["daphne", "gunicorn"])
def test_sigterm_under_load_drains_requests_in_flight_and_loses_no_acknowledged_batch(
    kind: str, fleet: tuple[Carrier, list[Mission], str, str], tmp_path: Path
) -> None:
    _, missions, client_id, client_secret = fleet
    env = {"WEB_DRAIN_SECONDS": str(DRAIN_SECONDS), "API_RATE_LIMIT": ""}
    if kind == "gunicorn":
        env["GUNICORN_CMD_ARGS"] = f"--graceful-timeout {DRAIN_SECONDS:g}"  # gunicorn's own drain time
    server = start_app_server(
        kind, log_path=tmp_path / f"{kind}.log", env=env, gunicorn_options=GUNICORN_PROBLEM_WORKER
    )
    try:
        token = partner_token(server, client_id, client_secret, "telemetry:write")
        load = Load(url=server.url, token=token, missions=missions[:SENDERS])
        load.start()
        halfway = threading.Event()
        uploads: list[Batch] = []
        refused: list[bool] = []
        # A connection kept alive from before the SIGTERM, used again while the server drains.
        kept = requests.Session()
        assert kept.get(f"{server.url}/healthz", timeout=30).status_code == 200
        kept_ids, kept_body = batch_body(missions[-1], 10)
        kept_answers: list[requests.Response] = []

        def during_drain() -> None:
            refused.append(connect_refused(server.url))
            kept_answers.append(
                kept.post(
                    f"{server.url}/api/v1/telemetry/batch",
                    data=kept_body,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                        "Idempotency-Key": str(uuid.uuid4()),
                    },
                    timeout=60,
                )
            )

        uploader = threading.Thread(
            target=lambda: uploads.append(
                slow_upload(server, token, missions[-1], halfway=halfway, during=during_drain)
            ),
            daemon=True,
        )
        uploader.start()
        deadline = time.monotonic() + 60
        while sum(b.status == 202 for b in load.batches) < 3 * SENDERS and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the uploader's half body is in
        sigterm_at = time.monotonic()
        halfway.set()
        took = exit_seconds(server.process, limit=DRAIN_SECONDS)
        load.finish()
        uploader.join(timeout=60)
    finally:
        server.stop()
    log = server.log_tail(40)

    assert took <= DRAIN_SECONDS + EXIT_SLACK_SECONDS, (took, log)
    assert server.process.returncode == 0, log
    # While it drained, a new connection was refused (not left in a backlog to be reset at the exit),
    # and a request on a connection kept alive from before was answered, with "Connection: close":
    # daphne refuses it (503 shutting-down, nothing stored), gunicorn serves it.
    assert refused == [True], log
    (kept_answer,) = kept_answers
    assert kept_answer.headers["Connection"].lower() == "close", kept_answer.headers
    if kind == "daphne":
        assert kept_answer.status_code == 503, kept_answer.text
        assert kept_answer.json()["type"].endswith("/shutting-down") and kept_answer.headers["Retry-After"]
        assert stored(kept_ids) == 0
    else:
        assert kept_answer.status_code == 202 and stored(kept_ids) == len(kept_ids), kept_answer.text
    # The request whose body was still arriving at SIGTERM was served to the end.
    assert uploads and uploads[0].status == 202, (uploads, log)
    assert stored(uploads[0].event_ids) == len(uploads[0].event_ids)
    answered = [b for b in load.batches if b.status is not None]
    # Requests the load generator had in flight at SIGTERM were answered too, not cut off.
    assert any(b.started < sigterm_at < b.ended and b.status == 202 for b in answered), log
    refused = [b for b in load.batches if b.status != 202]
    assert refused, "the load never met the stopped server"
    # Nothing was cut off: answers during the drain said "Connection: close", so no client sent a
    # request on a connection about to go; the next one found nothing listening.
    assert not [b for b in refused if b.status is None and b.error != "refused"], refused
    for batch in load.batches:
        count = stored(batch.event_ids)
        if batch.status == 202:  # acknowledged: stored in full
            assert batch.body["accepted"] == BATCH_EVENTS and count == BATCH_EVENTS, batch
        else:  # refused (a 503 problem, or no connection): nothing of it stored
            assert count == 0, batch
            if batch.status is not None:
                assert batch.status == 503 and batch.content_type.startswith("application/problem+json"), batch
                assert batch.body["type"].endswith("/shutting-down"), batch
    # So what is stored is exactly what was acknowledged.
    acknowledged = [event for b in load.batches if b.status == 202 for event in b.event_ids]
    assert stored([event for b in load.batches for event in b.event_ids]) == len(acknowledged)
    print(
        f"{kind}: exited {took:.2f} s after SIGTERM (drain time {DRAIN_SECONDS:g} s); "
        f"{sum(b.status == 202 for b in load.batches)} batches acknowledged and stored, "
        f"{sum(b.status == 503 for b in load.batches)} refused with 503 (a kept-alive connection's), "
        f"{sum(b.error == 'refused' for b in load.batches)} connections refused, "
        f"{sum(b.status is None and b.error != 'refused' for b in load.batches)} cut off without an answer"
    )


@pytest.mark.server_process
def test_sigterm_closes_websockets_as_going_away(
    fleet: tuple[Carrier, list[Mission], str, str], tmp_path: Path
) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    _, missions, client_id, client_secret = fleet
    # The safety ticker runs too (no heartbeats here, so it runs the safety loops): the drain lets it
    # finish its round.
    env = {
        "WEB_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "SAFETY_TICKER": "1",
        "SAFETY_STALE_SECONDS": "1",
        "SAFETY_TICK_SECONDS": "0.5",
        "LOG_LEVEL": "INFO",
    }
    server = start_app_server("daphne", log_path=tmp_path / "daphne.log", env=env)
    try:
        token = partner_token(server, client_id, client_secret, "telemetry:write")
        mission = missions[0]
        wait_for(lambda: "safety.degraded" in server.log_path.read_text(errors="replace"), 60, "the safety ticker")
        ws_url = server.url.replace("http://", "ws://") + "/ws/ingest/"
        with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30) as socket_:
            assert json.loads(socket_.recv(timeout=30))["type"] == "ready"
            event = {
                "event_id": str(uuid.uuid4()),
                "mission_id": mission.pk,
                "vehicle_id": mission.vehicle.external_id,
                "ts": timezone.now().isoformat(),
                "position": {"lat": 32.5, "lon": -96.5},
            }
            socket_.send(json.dumps({"seq": 1, "events": [event]}))
            assert json.loads(socket_.recv(timeout=30))["accepted"] == 1
            server.process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                socket_.recv(timeout=DRAIN_SECONDS + 10)
        server.process.wait(timeout=DRAIN_SECONDS + 30)
    finally:
        server.stop()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001  # going away
    assert server.process.returncode == 0, server.log_tail()
    (drain,) = log_events(server.log_path, "shutdown.drain")
    (drained,) = log_events(server.log_path, "shutdown.drained")
    assert drain["websockets_closed"] == 1
    assert drained["cancelled"] == 0 and drained["still_running"] == "[]", drained  # the ticker stopped in time


@pytest.mark.server_process
def test_a_request_stuck_past_the_drain_time_is_answered_and_daphne_still_exits_on_time(
    fleet: tuple[Carrier, list[Mission], str, str], tmp_path: Path
) -> None:
    """A view blocked on a row lock: the client gets 503 shutdown-interrupted, and daphne ends itself at its
    drain time (the thread that waits on the lock would otherwise keep the interpreter from exiting)."""
    require_service("PostgreSQL (a row lock to wait on)", settings.IS_POSTGRES)
    _, missions, client_id, client_secret = fleet
    mission = missions[0]
    drain = 4.0
    server = start_app_server("daphne", log_path=tmp_path / "daphne.log", env={"WEB_DRAIN_SECONDS": str(drain)})
    locked, release = threading.Event(), threading.Event()

    def hold_the_row() -> None:
        try:
            with transaction.atomic():
                Mission.objects.select_for_update().get(pk=mission.pk)
                locked.set()
                release.wait(timeout=120)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_row, daemon=True)
    answers: list[requests.Response] = []
    try:
        token = partner_token(server, client_id, client_secret, "missions:write")
        holder.start()
        assert locked.wait(timeout=30)
        request = threading.Thread(
            target=lambda: answers.append(
                requests.post(
                    f"{server.url}/api/v1/missions/{mission.pk}/status",
                    json={"status": "en_route", "reason": "left the yard"},
                    headers={"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())},
                    timeout=60,
                )
            ),
            daemon=True,
        )
        request.start()
        time.sleep(1.5)  # the view waits for the row
        took = exit_seconds(server.process, limit=drain)
        request.join(timeout=30)
    finally:
        release.set()
        if holder.is_alive():
            holder.join(timeout=30)
        server.stop()
    log = server.log_tail(30)
    assert took <= drain + EXIT_SLACK_SECONDS, (took, log)
    assert server.process.returncode == EXIT_DRAIN_EXPIRED, log  # ended by its deadline, the thread still waiting
    assert answers and answers[0].status_code == 503, (answers, log)
    assert answers[0].json()["type"].endswith("/shutdown-interrupted")
    mission.refresh_from_db()
    assert mission.status == "assigned"  # the process died in the middle of the transaction: rolled back


# --- The MQTT bridge, against a Mosquitto of the test's own -----------------------------------------

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
MESSAGES = 1500


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[str]:
    """A throw-away Mosquitto on a free loopback port (never the shared one), killed afterwards; its URL."""
    require_service("mosquitto (the broker's binary)", MOSQUITTO is not None)
    assert MOSQUITTO is not None
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    # Queues and in-flight windows large enough that the broker, not its limits, decides the test.
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\nmax_inflight_messages 1000\nlog_dest stderr\n"
    )
    log = (tmp_path / "mosquitto.log").open("wb")
    process = subprocess.Popen([MOSQUITTO, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"mosquitto did not listen on {port}: {(tmp_path / 'mosquitto.log').read_text()}")
                time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


def bridge_start(url: str, *, prefix: str, client_id: str, log_path: Path) -> subprocess.Popen[bytes]:
    """``manage.py mqtt_ingest`` on the test database, batching a second at a time (so it holds a queue)."""
    env = server_env(MQTT_DRAIN_SECONDS=str(DRAIN_SECONDS), LOG_LEVEL="INFO")
    argv = [sys.executable, "manage.py", "mqtt_ingest", "--url", url, "--topic-prefix", prefix]
    argv += ["--client-id", client_id, "--flush-ms", "1000"]
    with log_path.open("ab") as log:
        return subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.shared_database
def test_sigterm_of_the_mqtt_bridge_while_messages_flow_loses_none(mosquitto: str, tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    mission = MissionFactory()
    prefix, client_id = f"tms-shutdown-{uuid.uuid4().hex[:8]}", f"tms-shutdown-bridge-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}/{mission.carrier.slug}/{mission.vehicle.external_id}"
    ids = [str(uuid.uuid4()) for _ in range(MESSAGES + 1)]  # [0] is the probe

    def payload(index: int) -> str:
        ts = timezone.now().isoformat()
        return json.dumps(
            {"event_id": ids[index], "mission_id": mission.pk, "ts": ts, "position": {"lat": 32.5, "lon": -96.5}}
        )

    first_log, second_log = tmp_path / "bridge-1.log", tmp_path / "bridge-2.log"
    first = bridge_start(mosquitto, prefix=prefix, client_id=client_id, log_path=first_log)
    second: subprocess.Popen[bytes] | None = None
    host, port = mosquitto.removeprefix("mqtt://").split(":")
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tms-shutdown-pub-{uuid.uuid4().hex[:8]}")
    publisher.max_inflight_messages_set(1000)
    publisher.connect(host, int(port))
    publisher.loop_start()
    try:
        # The probe (sent again until it is stored: the broker drops it before the bridge has subscribed).
        probe_deadline = time.monotonic() + 60
        while stored(ids[:1]) == 0:
            assert time.monotonic() < probe_deadline, first_log.read_text(errors="replace")[-2000:]
            publisher.publish(topic, payload(0), qos=1).wait_for_publish(timeout=30)
            time.sleep(1.0)
        sent: list[Any] = []

        def publish_all() -> None:
            for index in range(1, MESSAGES + 1):
                sent.append(publisher.publish(topic, payload(index), qos=1))
                time.sleep(0.003)

        flow = threading.Thread(target=publish_all, daemon=True)
        flow.start()
        wait_for(lambda: len(sent) >= MESSAGES // 3, 60, "a third of the messages to be published")
        took = exit_seconds(first, limit=DRAIN_SECONDS)
        stored_by_first = stored(ids)
        flow.join(timeout=120)
        for info in sent:
            info.wait_for_publish(timeout=30)  # the broker has every message
        assert all(info.is_published() for info in sent)
        second = bridge_start(mosquitto, prefix=prefix, client_id=client_id, log_path=second_log)
        wait_for(lambda: stored(ids) == len(ids), 240, "the next bridge to store every message")
        took_second = exit_seconds(second, limit=DRAIN_SECONDS)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        for bridge in (first, second):
            if bridge is not None and bridge.poll() is None:
                bridge.kill()
                bridge.wait(timeout=10)
    log = first_log.read_text(errors="replace")[-3000:]

    assert took <= DRAIN_SECONDS + EXIT_SLACK_SECONDS and first.returncode == 0, (took, first.returncode, log)
    assert took_second <= DRAIN_SECONDS + EXIT_SLACK_SECONDS and second is not None and second.returncode == 0
    # The first bridge stored and acknowledged what it had queued (a second's batch) before it disconnected.
    (drained,) = log_events(first_log, "shutdown.drained")
    assert drained["queued"] > 0 and drained["left_unacknowledged"] == 0, drained
    # Every message is stored, exactly once: what the first bridge acknowledged it had stored (an
    # acknowledged message is gone from the broker), and what it had not taken went to the next one.
    assert stored(ids) == len(ids)
    assert 1 < stored_by_first < len(ids), stored_by_first
    print(
        f"mqtt bridge: exited {took:.2f} s after SIGTERM (drain time {DRAIN_SECONDS:g} s) having stored "
        f"{drained['handled']} queued messages during the drain; {stored_by_first} of {len(ids)} stored by it, "
        f"the other {len(ids) - stored_by_first} redelivered to the next bridge"
    )


# --- The Celery worker and beat --------------------------------------------------------------------


def journal(directory: Path) -> list[tuple[str, str, int]]:
    path = directory / "journal"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        what, name, pid = line.split()
        rows.append((what, name, int(pid)))
    return rows


@pytest.mark.services
def test_sigterm_of_a_celery_worker_finishes_short_tasks_and_requeues_the_rest(tmp_path: Path) -> None:
    from tms_console.celery import app

    env = worker_env(WORKER_DRAIN_SECONDS=str(DRAIN_SECONDS))
    app.control.purge()
    work = str(tmp_path)
    first = worker_start(
        env, pool="threads", concurrency=4, include="tests.faults.shutdown_tasks", log_path=tmp_path / "worker-1.log"
    )
    second: subprocess.Popen[bytes] | None = None
    try:
        app.send_task("tests.shutdown.hold", args=[work, "short", 1.5])
        app.send_task("tests.shutdown.hold", args=[work, "long", 300])
        wait_for(lambda: {n for w, n, _ in journal(tmp_path) if w == "started"} == {"short", "long"}, 60, "both")
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        app.send_task("tests.shutdown.hold", args=[work, "late", 0])  # after the stop began
        first.wait(timeout=DRAIN_SECONDS + 30)
        took = time.monotonic() - started
        (tmp_path / "long.release").touch()
        second = worker_start(
            env,
            pool="threads",
            concurrency=4,
            include="tests.faults.shutdown_tasks",
            log_path=tmp_path / "worker-2.log",
        )
        wait_for(
            lambda: {n for w, n, p in journal(tmp_path) if w == "done" and p == second.pid} >= {"long", "late"},
            60,
            "the next worker",
        )
        took_second = exit_seconds(second, limit=DRAIN_SECONDS)
    finally:
        for worker in (first, second):
            if worker is not None and worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    log = (tmp_path / "worker-1.log").read_text(errors="replace")[-3000:]
    rows = journal(tmp_path)

    assert took <= DRAIN_SECONDS + EXIT_SLACK_SECONDS, (took, log)
    # The long task outlasted the drain: it was interrupted and put back on the queue, and the worker
    # finished its own shutdown (acknowledgements sent, connection closed) in time.
    assert first.returncode == 0, (first.returncode, log)
    (requeued,) = log_events(tmp_path / "worker-1.log", "shutdown.requeued")
    assert "tests.shutdown.hold" in requeued["tasks"]
    assert ("done", "short", first.pid) in rows  # finished within the drain time
    assert ("started", "long", first.pid) in rows and ("done", "long", first.pid) not in rows
    assert not [r for r in rows if r[1] == "late" and r[2] == first.pid]  # no new task once stopping
    assert ("done", "long", second.pid) in rows and ("done", "late", second.pid) in rows  # redelivered
    assert took_second <= DRAIN_SECONDS + EXIT_SLACK_SECONDS and second.returncode == 0
    print(
        f"celery worker: exited {took:.2f} s after SIGTERM (drain time {DRAIN_SECONDS:g} s); "
        "the short task finished, the long one requeued and run by the next worker"
    )


@pytest.mark.services
def test_sigterm_of_celery_beat(tmp_path: Path) -> None:
    from tms_console.shutdown import BEAT_DRAIN_SECONDS

    schedule = tmp_path / "celerybeat-schedule"
    beat = beat_start(worker_env(), schedule=schedule, log_path=tmp_path / "beat.log")
    try:
        wait_for(lambda: "beat: Starting..." in (tmp_path / "beat.log").read_text(errors="replace"), 60, "beat")
        time.sleep(1.0)
        took = exit_seconds(beat, limit=BEAT_DRAIN_SECONDS)
    finally:
        if beat.poll() is None:
            beat.kill()
            beat.wait(timeout=10)
    assert took <= BEAT_DRAIN_SECONDS + EXIT_SLACK_SECONDS and beat.returncode == 0, (took, beat.returncode)
    assert any(tmp_path.glob("celerybeat-schedule*"))  # the schedule was saved


# --- The simulators --------------------------------------------------------------------------------


def test_sigterm_of_the_carrier_simulator_answers_the_request_in_flight(tmp_path: Path) -> None:
    from tms_console.shutdown import SIMULATOR_DRAIN_SECONDS

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tms_console.settings_test", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "manage.py", "run_carrier_sim", "--port", "0", "--no-demo-carriers"]
    argv += ["--client-id", "stop-carrier", "--client-secret", "stop-secret"]
    sim = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().decode().split(" on ", 1)[1].split()[0]
        token = requests.post(
            f"{url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("stop-carrier", "stop-secret"),
            timeout=30,
        ).json()["access_token"]
        requests.post(f"{url}/_faults", json={"latency_ms": 20_000}, timeout=30)  # every answer is held 20 s
        answers: list[requests.Response] = []
        slow = threading.Thread(
            target=lambda: answers.append(
                requests.get(f"{url}/health", headers={"Authorization": f"Bearer {token}"}, timeout=60)
            ),
            daemon=True,
        )
        slow.start()
        time.sleep(1.0)  # the request is held in the simulator
        took = exit_seconds(sim, limit=SIMULATOR_DRAIN_SECONDS)
        slow.join(timeout=30)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/health", timeout=5)
        output = sim.stdout.read().decode()
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(timeout=10)
    assert took <= SIMULATOR_DRAIN_SECONDS + EXIT_SLACK_SECONDS and sim.returncode == 0, (took, output)
    assert answers and answers[0].status_code == 200 and answers[0].json() == {"status": "ok"}
    assert "carrier simulator stopped (0 requests unanswered)" in output


@pytest.mark.server_process
def test_sigterm_of_the_fleet_simulator_finishes_its_batch(
    fleet: tuple[Carrier, list[Mission], str, str], tmp_path: Path
) -> None:
    from tms_console.shutdown import SIMULATOR_DRAIN_SECONDS

    carrier, missions, client_id, client_secret = fleet
    server = start_app_server("daphne", log_path=tmp_path / "daphne.log", env={"API_RATE_LIMIT": ""})
    env = server_env()
    argv = [sys.executable, "manage.py", "simulate_fleet", "--transport", "http", "--rate", "5"]
    argv += ["--carrier", carrier.slug, "--client-id", client_id, "--client-secret", client_secret]
    argv += ["--console-url", server.url, "--vehicles", str(len(missions))]
    sim = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: TelemetryWindowEvent.objects.filter(mission_id__in=[m.pk for m in missions]).count() > 50,
            60,
            "telemetry",
        )
        took = exit_seconds(sim, limit=SIMULATOR_DRAIN_SECONDS)
        assert sim.stdout is not None
        output = sim.stdout.read().decode()
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.wait(timeout=10)
        server.stop()
    assert took <= SIMULATOR_DRAIN_SECONDS + EXIT_SLACK_SECONDS and sim.returncode == 0, (took, output)
    done = [line for line in output.splitlines() if line.startswith("done: ")]
    assert done and "'rejected': 0" in done[0], output  # every batch it sent was answered and accepted
