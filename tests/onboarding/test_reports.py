"""Certification reports over the partner API: the carrier's own runs, each report, the signed certificate."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from missions.events import Actor
from missions.evidence.bundle import bundle_verify
from missions.evidence.keys import KeyRing
from missions.models import Carrier, CertificationRun
from missions.onboarding import certification
from missions.partner import services as partner_services
from missions.simulators.carrier import CarrierSimulator
from tests.evidence.test_persistence import key_in_environment
from tests.factories import CarrierFactory

pytestmark = pytest.mark.django_db


def _token(client_id: str, client_secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    answer = Client().post("/oauth2/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}")
    assert answer.status_code == 200, answer.content
    return str(answer.json()["access_token"])


def _get(path: str, token: str) -> Any:
    return Client().get(path, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_carrier_reads_its_runs_reports_and_signed_certificates_over_the_api(
    carrier: Carrier, manager: User, sandbox: CarrierSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVIDENCE_PUBLIC_KEYS", raising=False)
    key = key_in_environment(monkeypatch)
    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    running = _get(f"/api/v1/certification/runs/{run.run_key}/certificate", "")
    assert running.status_code == 401
    run = certification.certification_run(run.pk)
    creds = sandbox.state.sandbox_for(sandbox.state.config.client_id)  # the sandbox client the portal issued
    token = _token(creds.client_id, creds.client_secret)

    listing = _get("/api/v1/certification/runs", token)
    report = _get(f"/api/v1/certification/runs/{run.run_key}", token)
    certificate = _get(f"/api/v1/certification/runs/{run.run_key}/certificate", token)

    assert listing.status_code == 200
    (entry,) = listing.json()["results"]
    assert entry["run"] == str(run.run_key) and entry["status"] == "passed" and entry["contract_version"] == "1.1.0"
    assert (entry["checks_done"], entry["checks_total"]) == (len(run.checks), len(run.checks))
    assert entry["report_url"] == f"/api/v1/certification/runs/{run.run_key}"
    body = report.json()
    assert report.status_code == 200 and body["result"] == "passed" and body["run"] == str(run.run_key)
    assert body["contract"] == {"name": "docs/carrier-api.yaml", "version": "1.1.0"}
    assert [c["name"] for c in body["checks"]] == [n for n, _ in certification.CHECKS]
    assert all("evidence" not in c for c in body["checks"])
    assert body["certificateUrl"] == f"/api/v1/certification/runs/{run.run_key}/certificate"
    assert certificate.status_code == 200 and certificate["Content-Type"] == "application/json"
    verified = bundle_verify(certificate.content, KeyRing([key.public_key_bytes]))
    assert verified.ok and f"bundle is about urn:tms-console:certification:{run.pk}" in verified.checked


def test_another_carriers_runs_are_not_found_and_reading_needs_its_scope(carrier: Carrier, manager: User) -> None:
    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    other = CarrierFactory(name="Red River", slug="red-river")
    stranger = partner_services.partner_client_create(
        carrier_id=other.pk, name="red river", scopes=["certification:read"], actor=Actor.system("test")
    )
    no_scope = partner_services.partner_client_create(
        carrier_id=carrier.pk, name="telemetry only", scopes=["telemetry:write"], actor=Actor.system("test")
    )
    own = partner_services.partner_client_create(
        carrier_id=carrier.pk, name="production", scopes=["certification:read"], actor=Actor.system("test")
    )
    stranger_token = _token(stranger.client_id, stranger.client_secret)

    assert _get(f"/api/v1/certification/runs/{run.run_key}", stranger_token).status_code == 404
    assert _get("/api/v1/certification/runs", stranger_token).json()["results"] == []
    assert _get(f"/api/v1/certification/runs/{uuid.uuid4()}", stranger_token).status_code == 404
    scoped = _get("/api/v1/certification/runs", _token(no_scope.client_id, no_scope.client_secret))
    assert scoped.status_code == 403 and scoped.json()["required_scope"] == "certification:read"
    queued = _get(f"/api/v1/certification/runs/{run.run_key}/certificate", _token(own.client_id, own.client_secret))
    assert queued.status_code == 409 and "has no certificate yet" in queued.json()["detail"]
    assert CertificationRun.objects.get(pk=run.pk).status == "queued"
