"""A certification run's receivers: what a carrier's sandbox sends is verified, kept with its verdict, and
answered as production would answer it; nothing reaches missions or telemetry."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from missions.choices import CarrierStatus
from missions.events import Actor
from missions.models import (
    CarrierProfile,
    CertificationDelivery,
    CertificationRun,
    CertificationStatus,
    TelemetrySample,
)
from missions.onboarding import receivers, services
from missions.partner import services as partner_services
from missions.partner.services import IssuedClient
from tests.factories import CarrierFactory

pytestmark = pytest.mark.django_db


def _onboarding_carrier(slug: str) -> tuple[CertificationRun, services.SandboxCredentials]:
    carrier = CarrierFactory(name=slug.title(), slug=slug, status=CarrierStatus.ONBOARDING)
    CarrierProfile.objects.create(carrier=carrier, legal_name=carrier.name)
    issued = services.sandbox_credentials_issue(carrier_id=carrier.pk, actor=Actor.system("test"))
    run = CertificationRun.objects.create(
        carrier=carrier,
        run_key=uuid.uuid4(),
        contract_version="1.1.0",
        sandbox_url="https://sandbox.example",
        status=CertificationStatus.RUNNING,
    )
    return run, issued


@pytest.fixture
def running() -> tuple[CertificationRun, services.SandboxCredentials]:
    return _onboarding_carrier("lonestar")


def _signed(secret: str, body: dict[str, Any], *, at: float | None = None) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(body)
    moment = datetime.fromtimestamp(at or time.time(), tz=UTC)
    message_id = f"msg_{uuid.uuid4().hex}"
    headers = {
        "HTTP_WEBHOOK_ID": message_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(int(moment.timestamp())),
        "HTTP_WEBHOOK_SIGNATURE": Webhook(secret).sign(message_id, moment, payload),
    }
    return payload.encode(), headers


def _status(run: CertificationRun, mission_id: int | None = None) -> dict[str, Any]:
    mission = mission_id or receivers.synthetic_mission_id(run)
    return {
        "type": "mission.status",
        "timestamp": "2026-12-07T12:00:00Z",
        "data": {"mission_id": mission, "status": "en_route"},
    }


def _webhook(run: CertificationRun, body: bytes, headers: dict[str, str]) -> Any:
    url = f"/api/v1/certification/runs/{run.run_key}/webhooks"
    return Client().post(url, body, content_type="application/json", **headers)


def test_a_signed_webhook_is_kept_and_an_unsigned_stale_or_off_schema_one_is_refused_and_kept_with_why(
    running: tuple[CertificationRun, services.SandboxCredentials],
) -> None:
    run, issued = running
    good = _webhook(run, *_signed(issued.webhook_secret, _status(run)))
    unsigned = _webhook(run, json.dumps(_status(run)).encode(), {})
    stale = _webhook(run, *_signed(issued.webhook_secret, _status(run), at=time.time() - 3600))
    forged = _webhook(run, *_signed("whsec_" + base64.b64encode(b"x" * 24).decode(), _status(run)))
    other_mission = _webhook(run, *_signed(issued.webhook_secret, _status(run, mission_id=7)))

    assert good.status_code == 200 and good.json()["run"] == str(run.run_key)
    assert [r.status_code for r in (unsigned, stale, forged)] == [401, 401, 401]
    assert unsigned["Content-Type"] == "application/problem+json"
    assert other_mission.status_code == 422 and "not the run's" in other_mission.json()["detail"]
    kept = list(CertificationDelivery.objects.filter(run=run).order_by("pk"))
    assert [d.accepted for d in kept] == [True, False, False, False, False]
    assert "webhook-id, webhook-timestamp and webhook-signature are all required" in kept[1].reason
    assert "outside the tolerance" in kept[2].reason and "no signature matches" in kept[3].reason
    assert kept[0].headers["webhook-signature"].startswith("v1,")


def test_a_body_with_a_nul_byte_is_kept_storable_and_refused(
    running: tuple[CertificationRun, services.SandboxCredentials],
) -> None:
    run, issued = running
    body, headers = _signed(issued.webhook_secret, {"type": "mission.status", "data": {}})
    nul = body.replace(b'"data"', b'"da\x00ta"')

    answer = _webhook(run, nul, headers)

    assert answer.status_code == 401  # the signature covered other bytes
    kept = CertificationDelivery.objects.get(run=run)
    assert "\x00" not in kept.body and "da\ufffdta" in kept.body


def test_a_run_not_running_or_unknown_takes_nothing_and_a_flood_is_cut_off(
    running: tuple[CertificationRun, services.SandboxCredentials], monkeypatch: pytest.MonkeyPatch
) -> None:
    run, issued = running
    unknown = Client().post(
        f"/api/v1/certification/runs/{uuid.uuid4()}/webhooks", b"{}", content_type="application/json"
    )
    assert unknown.status_code == 404

    monkeypatch.setattr(receivers, "DELIVERIES_PER_RUN_MAX", 2)
    answers = [_webhook(run, *_signed(issued.webhook_secret, _status(run))).status_code for _ in range(3)]
    assert answers == [200, 200, 429]

    CertificationRun.objects.filter(pk=run.pk).update(status=CertificationStatus.PASSED)
    finished = _webhook(run, *_signed(issued.webhook_secret, _status(run)))
    assert finished.status_code == 409 and "takes nothing now" in finished.json()["detail"]
    assert CertificationDelivery.objects.filter(run=run).count() == 2


def _token(issued: IssuedClient | services.SandboxCredentials) -> str:
    basic = base64.b64encode(f"{issued.client_id}:{issued.client_secret}".encode()).decode()
    answer = Client().post("/oauth2/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert answer.status_code == 200, answer.content
    return str(answer.json()["access_token"])


def _event(run: CertificationRun, **changes: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "mission_id": receivers.synthetic_mission_id(run),
        "vehicle_id": receivers.synthetic_vehicle_id(run),
        "ts": timezone.now().isoformat(),
        "position": {"lat": 32.7, "lon": -96.8},
        **changes,
    }


def _telemetry(run: CertificationRun, events: list[dict[str, Any]], token: str | None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    url = f"/api/v1/certification/runs/{run.run_key}/telemetry"
    return Client().post(url, json.dumps({"events": events}), content_type="application/json", **headers)


def test_telemetry_needs_the_sandbox_clients_token_conforms_to_the_schema_and_is_never_stored_as_telemetry(
    running: tuple[CertificationRun, services.SandboxCredentials],
) -> None:
    run, issued = running
    token = _token(issued)
    stored_before = TelemetrySample.objects.count()

    good = _telemetry(run, [_event(run), _event(run)], token)
    no_token = _telemetry(run, [_event(run)], None)
    bad = _telemetry(run, [_event(run, position={"lat": 91, "lon": 0}), _event(run, vehicle_id="other")], token)
    empty = _telemetry(run, [], token)

    assert good.status_code == 202 and good.json()["accepted"] == 2
    assert no_token.status_code == 401
    assert bad.status_code == 422 and bad.json()["detail"].startswith("event 0: position/lat")
    assert "event 1: vehicle_id is 'other'" in bad.json()["detail"]
    assert empty.status_code == 400
    kept = list(CertificationDelivery.objects.filter(run=run, channel="telemetry").order_by("pk"))
    assert [d.accepted for d in kept] == [True, False, False, False]
    assert len(kept[0].samples) == 2 and kept[0].headers["authorization"] == "Bearer [redacted]"
    assert kept[1].reason.startswith("401")
    assert TelemetrySample.objects.count() == stored_before


def test_a_production_token_or_another_carriers_sandbox_reaches_no_run(
    running: tuple[CertificationRun, services.SandboxCredentials],
) -> None:
    run, _ = running
    production = partner_services.partner_client_create(
        carrier_id=run.carrier_id, name="production", scopes=["telemetry:write"], actor=Actor.system("test")
    )
    _, other_sandbox = _onboarding_carrier("red-river")

    wrong_scope = _telemetry(run, [_event(run)], _token(production))
    other_carrier = _telemetry(run, [_event(run)], _token(other_sandbox))

    assert wrong_scope.status_code == 403 and wrong_scope.json()["required_scope"] == "certification:write"
    assert other_carrier.status_code == 404
    # The sandbox client reaches nothing else of the partner API.
    assert Client().get("/api/v1/missions", HTTP_AUTHORIZATION=f"Bearer {_token(other_sandbox)}").status_code == 403


def test_issuing_again_replaces_the_sandbox_client_and_its_tokens(
    running: tuple[CertificationRun, services.SandboxCredentials],
) -> None:
    run, first = running
    token = _token(first)

    second = services.sandbox_credentials_issue(carrier_id=run.carrier_id, actor=Actor.system("test"))

    assert second.client_id != first.client_id and second.webhook_secret != first.webhook_secret
    assert _telemetry(run, [_event(run)], token).status_code == 401
    assert _telemetry(run, [_event(run)], _token(second)).status_code == 202
