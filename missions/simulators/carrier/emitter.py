"""The simulated sandbox's side of a certification run: ``POST /sandbox/emit`` (docs/carrier-api.yaml 1.1.0).

After answering 202 the sandbox, on a thread of its own, delivers one signed
``mission.status`` Standard Webhook to ``webhook_url``, takes a token at
``token_url`` with the sandbox's client credentials for the console's API and
sends ``telemetry_seconds`` of samples to ``telemetry_url`` at its declared
rate, one sample a request, each stamped with the time it was taken.

Two broken modes (``Faults``): ``unsigned_webhooks`` sends the webhook with no
signature headers; ``clock_offset_seconds`` stamps every sample that far off.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from missions.simulators.carrier.state import Faults, SandboxCredentials

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0


def emission_start(
    request: dict[str, Any], *, credentials: SandboxCredentials, faults: Faults, record: list[dict[str, Any]]
) -> threading.Thread:
    """Send what ``request`` (a SandboxEmit) asks for on a daemon thread; each call is appended to ``record``."""
    thread = threading.Thread(
        target=_emit,
        args=(request, SandboxCredentials(**vars(credentials)), Faults(**vars(faults)), record),
        name=f"sandbox-emit-{request['run']}",
        daemon=True,
    )
    thread.start()
    return thread


def _emit(
    request: dict[str, Any], credentials: SandboxCredentials, faults: Faults, record: list[dict[str, Any]]
) -> None:
    with httpx.Client(timeout=TIMEOUT_SECONDS) as client:
        try:
            record.append(_webhook(client, request, credentials, faults))
        except httpx.HTTPError as exc:
            record.append({"channel": "webhook", "error": f"{type(exc).__name__}: {exc}"})
        try:
            _telemetry(client, request, credentials, faults, record)
        except httpx.HTTPError as exc:
            record.append({"channel": "telemetry", "error": f"{type(exc).__name__}: {exc}"})


def _webhook(
    client: httpx.Client, request: dict[str, Any], credentials: SandboxCredentials, faults: Faults
) -> dict[str, Any]:
    now = datetime.now(UTC)
    message_id = f"msg_cert_{uuid.uuid4().hex}"
    payload = json.dumps(
        {
            "type": "mission.status",
            "timestamp": now.isoformat(),
            "data": {"mission_id": request["mission_id"], "status": "en_route", "reason": "certification"},
        }
    )
    headers = {"Content-Type": "application/json"}
    if not faults.unsigned_webhooks and credentials.webhook_secret:
        headers.update(
            {
                "webhook-id": message_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": Webhook(credentials.webhook_secret).sign(message_id, now, payload),
            }
        )
    response = client.post(request["webhook_url"], content=payload, headers=headers)
    return {"channel": "webhook", "status_code": response.status_code}


def _token(client: httpx.Client, request: dict[str, Any], credentials: SandboxCredentials) -> str:
    response = client.post(
        request["token_url"],
        data={"grant_type": "client_credentials", "scope": "certification:write"},
        auth=(credentials.client_id, credentials.client_secret),
    )
    if response.status_code != 200:
        return ""  # sent without a token: the console refuses and the run says why
    return str(response.json().get("access_token", ""))


def _telemetry(
    client: httpx.Client,
    request: dict[str, Any],
    credentials: SandboxCredentials,
    faults: Faults,
    record: list[dict[str, Any]],
) -> None:
    token = _token(client, request, credentials)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    interval = 1.0 / credentials.telemetry_rate_hz
    started = time.monotonic()
    lat, lon = 32.7767, -96.797
    sample = 0
    while True:
        due = started + sample * interval
        if due - started > request["telemetry_seconds"]:
            return
        time.sleep(max(0.0, due - time.monotonic()))
        taken = datetime.now(UTC) + timedelta(seconds=faults.clock_offset_seconds)
        event = {
            "event_id": str(uuid.uuid4()),
            "mission_id": request["mission_id"],
            "vehicle_id": request["vehicle_id"],
            "ts": taken.isoformat().replace("+00:00", "Z"),
            "position": {"lat": lat - 0.0003 * sample, "lon": lon + 0.0002 * sample, "speed_kph": 88.0},
            "autonomy_mode": "autonomous",
        }
        response = client.post(request["telemetry_url"], json={"events": [event]}, headers=headers)
        record.append({"channel": "telemetry", "status_code": response.status_code})
        sample += 1
