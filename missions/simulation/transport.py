"""How the simulated fleet's carriers reach the product: their telemetry and their answers.

``InProcess`` hands each carrier's batch to ``ingest_events`` and its answers to the services, in this
process. ``PartnerHttp`` sends them as a carrier's gateway does: it gives every carrier a
client-credentials application, starts a partner server of its own (gunicorn serving
``tms_console.wsgi``, a separate process on the run's database), fetches short-lived tokens from
``/oauth2/token`` (renewed before they expire in simulated time), posts each batch to
``/api/v1/telemetry/batch`` and its answers to tenders, mission statuses and exceptions to the partner
API, each with an Idempotency-Key. The server reads its wall time from the run's clock file
(``tms_console.simclock``): before a request at a new instant the fleet writes the instant and waits
until every process has moved. The server runs the subscribers of what it stores (incidents, evidence,
runbooks, SLA re-evaluations) in its own process, eagerly, before it answers, so the run stays in
lockstep.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import quote

import httpx
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from missions.events import Actor
from missions.models import Carrier
from missions.partner.services import partner_client_create
from missions.services import mission_exception_report, mission_transition, offer_record
from missions.telemetry.ingest import ingest_events
from missions.vehicles import mission_vehicle_assign
from tms_console import simclock
from tms_console.domain import DomainError

SETUP = Actor.system("program-simulator")
TRANSPORTS = ("inprocess", "http", "ws", "mqtt")
SERVER_START_SECONDS = 60.0


class TransportError(RuntimeError):
    """The partner server could not be started or refused a batch as a whole."""


class Transport(Protocol):
    def send(self, carrier: Carrier, events: list[dict[str, Any]], now: datetime) -> list[str]:
        """Deliver one carrier's batch at ``now``; the refusals, one line each."""

    def offer(self, carrier: Carrier, tender_id: int, *, kind: str, vehicle: str, now: datetime) -> None:
        """The carrier answers a tender (raises ``DomainError`` when the product refuses)."""

    def mission_status(
        self, carrier: Carrier, mission_id: int, status: str, *, now: datetime, reason: str = ""
    ) -> None:
        """The carrier reports a mission's new status (raises ``DomainError`` when the product refuses)."""

    def mission_exception(self, carrier: Carrier, mission_id: int, *, kind: str, detail: str, now: datetime) -> None:
        """The carrier reports an exception on a mission (raises ``DomainError`` when the product refuses)."""

    def mission_vehicle(self, carrier: Carrier, mission_id: int, *, vehicle: str, now: datetime) -> None:
        """The carrier names the truck of a mission booked without one (raises ``DomainError`` when refused)."""

    def close(self) -> None: ...

    def stats(self) -> dict[str, Any]:
        """What the transport did, for the run's summary."""


class InProcess:
    def __init__(self) -> None:
        self.batches = 0

    def send(self, carrier: Carrier, events: list[dict[str, Any]], now: datetime) -> list[str]:
        result = ingest_events(carrier=carrier, events=events, source="program-sim")
        self.batches += 1
        return refusal_lines(events, result.rejected)

    def offer(self, carrier: Carrier, tender_id: int, *, kind: str, vehicle: str, now: datetime) -> None:
        offer_record(tender_id=tender_id, actor=Actor.for_carrier(carrier), kind=kind, vehicle_external_id=vehicle)

    def mission_status(
        self, carrier: Carrier, mission_id: int, status: str, *, now: datetime, reason: str = ""
    ) -> None:
        mission_transition(mission_id=mission_id, to_status=status, actor=Actor.for_carrier(carrier), reason=reason)

    def mission_exception(self, carrier: Carrier, mission_id: int, *, kind: str, detail: str, now: datetime) -> None:
        mission_exception_report(mission_id=mission_id, kind=kind, actor=Actor.for_carrier(carrier), detail=detail)

    def mission_vehicle(self, carrier: Carrier, mission_id: int, *, vehicle: str, now: datetime) -> None:
        mission_vehicle_assign(mission_id=mission_id, vehicle_external_id=vehicle, actor=Actor.for_carrier(carrier))

    def stats(self) -> dict[str, Any]:
        return {"name": "inprocess", "batches": self.batches}

    def close(self) -> None:
        return None


def refusal_lines(events: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> list[str]:
    return [f"telemetry event {events[r['index']]['event_id']}: {r['reason']}" for r in rejected]


def database_url() -> str:
    """The URL of the database this process is on now (the run's own), for the server it starts."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.creation.is_in_memory_db(s["NAME"]):  # type: ignore[attr-defined]
            raise TransportError("the run's server processes need a database they can open, not an in-memory one")
        return f"sqlite:///{s['NAME']}"
    if connection.vendor != "postgresql":
        raise TransportError(f"the run's server processes need PostgreSQL or an SQLite file, not {connection.vendor}")
    user = quote(str(s.get("USER") or ""), safe="")
    password = quote(str(s.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


# Without REDIS_URL a product process caches in this table of its database (settings.CACHES).
CHILD_CACHE_TABLE = "tms_cache"


def child_env(clock_file: Path) -> dict[str, str]:
    """The environment of a product process the run starts: the run's database and clock, tasks run eagerly
    (a process's subscribers run before it answers), nothing paged, no shared channel layer or broker.

    Such a process caches in its database: the table is made here, in the run's database."""
    call_command("createcachetable", CHILD_CACHE_TABLE, verbosity=0)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL", "CHANNEL_LAYERS")}
    env.update(
        DATABASE_URL=database_url(),
        DB_POOL="0",
        SECRET_KEY=str(settings.SECRET_KEY),
        TMS_SIM_CLOCK_FILE=str(clock_file),
        CELERY_TASK_ALWAYS_EAGER="true",
        PAGERDUTY_EVENTS_URL="",
        PAGERDUTY_ROUTING_KEY="",
        SLA_FINISH_EVALUATION_INTERVAL_SECONDS=str(settings.SLA_FINISH_EVALUATION_INTERVAL_SECONDS),
        # Ten real seconds are many simulated minutes: a stream reads its missions' status for every batch.
        TELEMETRY_MISSION_CACHE_SECONDS="0",
        LOG_LEVEL="WARNING",
    )
    return env


SERVERS = {
    # gunicorn serves the partner API and webhooks (tms_console.wsgi), daphne the console and its websockets.
    "gunicorn": ["-m", "gunicorn", "--bind", "fd://{fd}", "--workers", "1", "--threads", "1", "--log-level", "warning",
                 "tms_console.wsgi:application"],
    "daphne": ["-m", "daphne", "--fd", "{fd}", "-v", "0", "tms_console.asgi:application"],
}  # fmt: skip


def server_start(kind: str, log: IO[bytes], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``kind`` on a loopback port of its own (the listening socket handed over); the process and its URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    command = [sys.executable, *(a.format(fd=listener.fileno()) for a in SERVERS[kind])]
    try:
        # A fixed argv of the project's own server; nothing in it comes from input.
        process = subprocess.Popen(  # noqa: S603  # nosec B603
            command, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(listener.fileno(),), start_new_session=True,
        )  # fmt: skip
    finally:
        listener.close()
    return process, f"http://127.0.0.1:{port}"


def wait_until_serving(http: httpx.Client, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TransportError(f"the {what} exited with {process.returncode}; see its log")
        try:
            if http.get("/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TransportError(f"the {what} did not answer /healthz within {SERVER_START_SECONDS:.0f} s")


def process_stop(process: subprocess.Popen[bytes] | None, *, timeout: float = 20) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PartnerHttp:
    """A partner server of the run's own and one client per carrier; see the module's docstring."""

    def __init__(
        self, *, carriers: list[Carrier], out: Path, start: datetime, env: dict[str, str] | None = None
    ) -> None:
        self.clock_file = out / "clock"
        simclock.clock_write(self.clock_file, start)
        self._instant = start
        scopes = ["telemetry:write", "tender:write", "missions:write", "exceptions:write"]
        self._clients = {
            c.pk: partner_client_create(carrier_id=c.pk, name=f"{c.slug} gateway", scopes=scopes, actor=SETUP)
            for c in carriers
        }
        self._tokens: dict[int, tuple[str, datetime]] = {}
        self.counts = {"batches": 0, "calls": 0, "tokens_fetched": 0, "answered_401": 0}
        self._log = (out / "partner-server.log").open("wb")
        # The processes' environment; ``env`` adds to it (a worker of the run's own takes their tasks).
        self.env = child_env(self.clock_file) | (env or {})
        self._process, self.url = server_start("gunicorn", self._log, self.env)
        self._http = httpx.Client(base_url=self.url, timeout=60.0)
        try:
            wait_until_serving(self._http, self._process, "partner server")
        except BaseException:
            self.close()
            raise

    def _token(self, carrier: Carrier, now: datetime, *, renew: bool = False) -> str:
        token, renew_at = self._tokens.get(carrier.pk, ("", now))
        if renew or now >= renew_at:
            issued = self._clients[carrier.pk]
            basic = base64.b64encode(f"{issued.client_id}:{issued.client_secret}".encode()).decode()
            answer = self._http.post(
                "/oauth2/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
            )
            if answer.status_code != 200:
                raise TransportError(f"token for {carrier.slug}: {answer.status_code} {answer.text[:300]}")
            self.counts["tokens_fetched"] += 1
            body = answer.json()
            # Renewed a minute before it expires in simulated time, as a gateway does.
            token = str(body["access_token"])
            self._tokens[carrier.pk] = (token, now + timedelta(seconds=max(int(body.get("expires_in", 0)) - 60, 0)))
        return token

    def clock_to(self, now: datetime) -> None:
        if now != self._instant:
            simclock.clock_write(self.clock_file, now)
            self._instant = now
            time.sleep(simclock.clock_settle_seconds())

    def _post(self, carrier: Carrier, path: str, body: dict[str, Any], *, key: str, now: datetime) -> httpx.Response:
        self.clock_to(now)
        answer = None
        for renew in (False, True):  # a token refused anyway is fetched again once, as a gateway does
            headers = {"Authorization": f"Bearer {self._token(carrier, now, renew=renew)}", "Idempotency-Key": key}
            answer = self._http.post(path, json=body, headers=headers)
            if answer.status_code != 401:
                break
            self.counts["answered_401"] += 1
        assert answer is not None
        return answer

    def send(self, carrier: Carrier, events: list[dict[str, Any]], now: datetime) -> list[str]:
        key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"batch:{events[0]['event_id']}:{len(events)}"))
        answer = self._post(carrier, "/api/v1/telemetry/batch", {"events": events}, key=key, now=now)
        if answer.status_code != 202:
            raise TransportError(f"batch of {carrier.slug} refused: {answer.status_code} {answer.text[:500]}")
        self.counts["batches"] += 1
        return refusal_lines(events, answer.json().get("rejected", []))

    def _call(self, carrier: Carrier, path: str, body: dict[str, Any], now: datetime) -> None:
        """A carrier's write; a problem answer (4xx) becomes the ``DomainError`` the service would have raised."""
        key = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{path}:{json.dumps(body, sort_keys=True)}:{now.isoformat()}"))
        answer = self._post(carrier, path, body, key=key, now=now)
        self.counts["calls"] += 1
        if 400 <= answer.status_code < 500:
            try:
                problem = answer.json()
            except ValueError:
                problem = {}
            detail = problem.get("detail") or problem.get("title") or answer.text[:300]
            raise DomainError(f"{answer.status_code} {detail}")
        if answer.status_code >= 300:
            raise TransportError(f"{path}: {answer.status_code} {answer.text[:500]}")

    def offer(self, carrier: Carrier, tender_id: int, *, kind: str, vehicle: str, now: datetime) -> None:
        body = {"kind": kind, "vehicle_external_id": vehicle}
        self._call(carrier, f"/api/v1/tenders/{tender_id}/offers", body, now)

    def mission_status(
        self, carrier: Carrier, mission_id: int, status: str, *, now: datetime, reason: str = ""
    ) -> None:
        self._call(carrier, f"/api/v1/missions/{mission_id}/status", {"status": status, "reason": reason}, now)

    def mission_exception(self, carrier: Carrier, mission_id: int, *, kind: str, detail: str, now: datetime) -> None:
        self._call(carrier, f"/api/v1/missions/{mission_id}/exceptions", {"kind": kind, "detail": detail}, now)

    def mission_vehicle(self, carrier: Carrier, mission_id: int, *, vehicle: str, now: datetime) -> None:
        self._call(carrier, f"/api/v1/missions/{mission_id}/vehicle", {"vehicle_external_id": vehicle}, now)

    def stats(self) -> dict[str, Any]:
        return {"name": "http", "server": "gunicorn tms_console.wsgi", **self.counts}

    def close(self) -> None:
        if getattr(self, "_http", None) is not None:
            self._http.close()
        process_stop(getattr(self, "_process", None))
        self._log.close()
