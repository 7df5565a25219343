"""What the fault tests inject faults into: their own redis-server and mosquitto, and the project's processes.

Every fault is injected into something the test started itself: a
``redis-server`` or ``mosquitto`` on a free loopback port (killed with
SIGKILL and started again on the same port), the test's own PostgreSQL
database, or a server, worker, beat or bridge process it spawned. The shared
services of the machine are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth.models import User

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier, Mission
from missions.models.telemetry import TelemetryWindowEvent
from missions.partner import services as partner_services
from tests.conftest import require_service, verified_client
from tests.factories import MissionFactory, VehicleFactory
from tests.servers import GUNICORN_PROBLEM_WORKER, AppServer, free_port, server_env, start_app_server

BASE_DIR = Path(__file__).resolve().parents[2]
REDIS_SERVER = shutil.which("redis-server")
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
METRICS_TOKEN = "faults-metrics-token"
TIMEOUT = 30.0  # an upper bound for something to happen, never asserted as a timing


def require_postgres() -> None:
    """The fault tests prove the product on its real services: PostgreSQL first of all."""
    require_service("PostgreSQL", bool(settings.IS_POSTGRES))


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def wait_until(check: Callable[[], Any], what: str, seconds: float = TIMEOUT, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true (returned); fail with ``what`` after ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(every)


# --- Dependencies of our own ---------------------------------------------------------------------


@dataclass
class OwnServer:
    """A dependency server on a fixed loopback port that the test kills (SIGKILL) and starts again."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} runs already"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port) or self._exited(), f"{self.name} to listen on {self.port}", 15)
        assert port_open(self.port), f"{self.name} exited:\n{self.log_tail()}"

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; the port is closed when this returns."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        wait_until(lambda: not port_open(self.port), f"{self.name}'s port to close", 5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def own_redis(directory: Path) -> Iterator[OwnServer]:
    """A redis-server of the test's own on a free port, with no persistence (a restart starts empty)."""
    require_service("redis-server", REDIS_SERVER is not None)
    assert REDIS_SERVER is not None
    port = free_port()
    argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = OwnServer("redis-server", [*argv, "--dir", str(directory)], port, directory / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def redis_url(server: OwnServer, db: int = 0) -> str:
    return f"redis://127.0.0.1:{server.port}/{db}"


@contextmanager
def own_mosquitto(directory: Path) -> Iterator[OwnServer]:
    """A mosquitto of the test's own on a free port, from a generated configuration.

    Persistence is on and saved after every change, so the sessions and the
    queued QoS 1 messages it held survive a SIGKILL, as with a broker whose
    persistence is configured for that.
    """
    require_service("mosquitto", MOSQUITTO is not None)
    assert MOSQUITTO is not None
    port = free_port()
    store = directory / "mosquitto-data"
    store.mkdir(exist_ok=True)
    config = directory / "mosquitto.conf"
    config.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence true",
                f"persistence_location {store}/",
                "autosave_on_changes true",
                "autosave_interval 1",
                "max_queued_messages 10000",
                # Root would otherwise be dropped to the mosquitto user, who cannot write here.
                *(["user root"] if os.geteuid() == 0 else []),
                "log_dest stdout",
                "",
            ]
        )
    )
    server = OwnServer("mosquitto", [MOSQUITTO, "-c", str(config)], port, directory / "mosquitto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- The project's processes ------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    """Environment for a project process on the test database (``extra`` over it), with the metrics token."""
    return server_env(METRICS_TOKEN=METRICS_TOKEN, **extra)


@dataclass
class Processes:
    """Project processes (celery worker and beat, the MQTT bridge) started by a test, stopped afterwards."""

    directory: Path
    env: dict[str, str]
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.directory / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started[name] = process
        return process

    def worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        return self.start(
            name,
            [
                "-m",
                "celery",
                "-A",
                "tms_console",
                "worker",
                "--pool=threads",
                "--concurrency=2",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
            ],
        )

    def beat(self) -> subprocess.Popen[bytes]:
        schedule = self.directory / "celerybeat-schedule"
        return self.start(
            "beat", ["-m", "celery", "-A", "tms_console", "beat", "--loglevel=WARNING", "-s", str(schedule)]
        )

    def alive(self, name: str) -> bool:
        return self.started[name].poll() is None

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            text = (self.directory / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log_tail(name)}" for name in self.started)

    def stop(self) -> None:
        for process in self.started.values():
            if process.poll() is None:
                process.terminate()
        for process in self.started.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextmanager
def processes(directory: Path, env: dict[str, str]) -> Iterator[Processes]:
    started = Processes(directory, env)
    try:
        yield started
    finally:
        started.stop()


@contextmanager
def app_server(kind: str, directory: Path, **env: str) -> Iterator[AppServer]:
    """daphne or gunicorn on the test database with ``env`` (and a metrics token), stopped afterwards."""
    server = start_app_server(
        kind,
        log_path=directory / f"{kind}.log",
        env={"METRICS_TOKEN": METRICS_TOKEN, **env},
        gunicorn_options=GUNICORN_PROBLEM_WORKER,
    )
    try:
        yield server
    finally:
        server.stop()


# --- Reading what the operator sees -----------------------------------------------------------


def metrics(server: AppServer) -> str:
    response = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text[:500]
    return response.text


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text page (None when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = ",".join(sorted(p for p in re.findall(r'\w+="[^"]*"', match.group(2) or "")))
        if found == wanted:
            return float(match.group(3))
    return None


def readyz(server: AppServer) -> tuple[int, dict[str, Any], requests.structures.CaseInsensitiveDict[str]]:
    response = requests.get(f"{server.url}/readyz", timeout=10)
    return response.status_code, dict(response.json()), response.headers


# --- A carrier sending telemetry over the partner API ---------------------------------------------


def en_route_mission(carrier: Carrier) -> Mission:
    return MissionFactory(carrier=carrier, vehicle=VehicleFactory(carrier=carrier), status=MissionStatus.EN_ROUTE)


def stored_ids(mission: Mission) -> list[str]:
    """The event ids stored for ``mission``, one per stored row (a duplicate shows twice)."""
    return [str(e) for e in TelemetryWindowEvent.objects.filter(mission=mission).values_list("event_id", flat=True)]


def console_session(server: AppServer, user: User) -> requests.Session:
    """A browser session of a verified console user (the session lives in the database)."""
    client = verified_client(user)
    session = requests.Session()
    session.cookies.set("sessionid", client.cookies["sessionid"].value, domain="127.0.0.1")
    assert session.get(f"{server.url}/shipments/", timeout=30, allow_redirects=False).status_code == 200
    return session


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def telemetry_event(mission: Mission, *, ts: datetime | None = None, lat: float = 32.5) -> dict[str, Any]:
    assert mission.vehicle is not None
    return {
        "schema_version": "1",
        "event_id": str(uuid.uuid4()),
        "mission_id": mission.pk,
        "vehicle_id": mission.vehicle.external_id,
        "correlation_id": str(mission.correlation_id),
        "ts": iso(ts or datetime.now(UTC)),
        "position": {"lat": lat, "lon": -96.5, "speed_kph": 88.0, "heading_deg": 170.0, "accuracy_m": 3.0},
        "mission_state": "en_route",
        "health": {"fuel_pct": 70.0, "critical_sensors_ok": True, "ecu_errors": [], "thermal_warning": False},
        "connectivity": {"uplink": "5g", "packet_loss_pct": 0.2, "latency_ms": 40},
        "safety_event": None,
        "autonomy_mode": "autonomous",
    }


@dataclass
class Sender:
    """A carrier's integration: a token from the server, batches posted with an Idempotency-Key each."""

    server: AppServer
    token: str
    session: requests.Session = field(default_factory=requests.Session)

    @classmethod
    def for_carrier(cls, server: AppServer, carrier: Carrier) -> Sender:
        issued = partner_services.partner_client_create(
            carrier_id=carrier.pk,
            name=f"{carrier.slug} faults",
            scopes=["telemetry:write", "missions:read", "tender:read", "exceptions:write"],
            actor=Actor.system("test"),
        )
        answer = requests.post(
            f"{server.url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(issued.client_id, issued.client_secret),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return cls(server=server, token=str(answer.json()["access_token"]))

    def post_batch(self, events: list[dict[str, Any]], key: str) -> requests.Response:
        return self.post("/api/v1/telemetry/batch", {"events": events}, key)

    def post(self, path: str, body: Any, key: str) -> requests.Response:
        return self.session.post(
            f"{self.server.url}{path}",
            data=json.dumps(body),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Idempotency-Key": key,
            },
            timeout=30,
        )

    def get(self, path: str) -> requests.Response:
        return self.session.get(
            f"{self.server.url}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )


def assert_unavailable_problem(response: requests.Response) -> dict[str, Any]:
    """503 as documented: problem+json with Retry-After (never a 500)."""
    assert response.status_code == 503, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    assert int(response.headers["Retry-After"]) > 0
    body = dict(response.json())
    assert body["status"] == 503
    return body
