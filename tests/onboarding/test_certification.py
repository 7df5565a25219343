"""Certification runs against the carrier simulator as a sandbox: all pass, a broken sandbox fails the right ones."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from missions.events import Actor
from missions.models import AuditEvent, Carrier, CarrierProfile, CertificationRun, CertificationStatus
from missions.onboarding import certification
from missions.simulators.carrier import CarrierSimulator, SimConfig
from tests.conftest import verified_client
from tests.onboarding.conftest import sandbox_configure
from tests.onboarding.test_portal import _accept, _invite, _portal_client
from tms_console.domain import DomainError

pytestmark = pytest.mark.django_db


def _run(carrier: Carrier, manager: User) -> CertificationRun:
    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    return certification.certification_run(run.pk)


def _results(run: CertificationRun) -> dict[str, str]:
    return {c["name"]: c["status"] for c in run.checks}


def test_a_conforming_sandbox_passes_every_check_with_its_evidence(carrier: Carrier, manager: User) -> None:
    run = _run(carrier, manager)

    failures = [(c["name"], c.get("detail")) for c in run.checks if c["status"] != "passed"]
    assert run.status == CertificationStatus.PASSED, failures
    assert set(_results(run).values()) == {"passed"} and len(run.checks) == len(certification.CHECKS)
    assert run.contract_version == "1.1.0" and run.started_at and run.finished_at
    submit = next(c for c in run.checks if c["name"] == "tender_submit")
    assert submit["evidence"][0]["request"]["headers"]["Authorization"] == "[redacted]"
    assert submit["evidence"][0]["response"]["status"] == 201
    stored = json.dumps(run.checks)
    assert "sim-secret" not in stored
    token = next(c for c in run.checks if c["name"] == "auth_token")["evidence"][0]
    assert token["request"]["body"]["client_secret"] == "[redacted]"
    assert token["response"]["body"]["access_token"] == "[redacted]"
    finished = AuditEvent.objects.get(action="carrier.certification_finished")
    assert finished.after is not None and finished.after["status"] == "passed"


def test_wrong_sandbox_credentials_fail_the_token_check_and_skip_what_needs_it(carrier: Carrier, manager: User) -> None:
    CarrierProfile.objects.filter(carrier=carrier).update(sandbox_client_secret="wrong")

    run = _run(carrier, manager)

    results = _results(run)
    assert run.status == CertificationStatus.FAILED
    assert results["auth_token"] == "failed" and results["auth_required"] == "passed"
    assert {results[n] for n in ("health", "tender_submit", "tender_status", "tender_cancel")} == {"skipped"}
    token = next(c for c in run.checks if c["name"] == "auth_token")
    assert "Expected 200, got 401" in token["detail"] and "client_credentials" in token["hint"]


def test_a_slow_sandbox_fails_only_the_latency_check(
    carrier: Carrier, manager: User, sandbox: CarrierSimulator, settings: Any
) -> None:
    settings.CERTIFICATION_LATENCY_P95_MS = 100
    sandbox.faults_set(latency_ms=200)

    run = _run(carrier, manager)

    assert {n for n, status in _results(run).items() if status != "passed"} == {"latency_p95"}
    latency = next(c for c in run.checks if c["name"] == "latency_p95")
    assert "above the 100 ms bound" in latency["detail"] and latency["hint"]


def test_a_sandbox_that_forgets_its_tenders_fails_the_resend_and_the_status_checks(
    carrier: Carrier, manager: User, sandbox: CarrierSimulator
) -> None:
    sandbox.faults_set(lose_tenders=True)

    run = _run(carrier, manager)

    failed = {n for n, status in _results(run).items() if status == "failed"}
    assert {"idempotent_resend", "tender_status"} <= failed
    resend = next(c for c in run.checks if c["name"] == "idempotent_resend")
    assert "another tender" in resend["detail"] and "Idempotency-Key" in resend["hint"]


def test_a_run_taken_over_after_a_worker_died_resumes_without_tendering_twice(
    carrier: Carrier, manager: User, sandbox: CarrierSimulator
) -> None:
    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    # The first worker ran the checks up to the status poll, then died.
    original = dict(certification.RUNNERS)
    stop_at = "tender_status"

    def dying(s: certification.Session) -> str:
        raise SystemExit("worker lost")

    certification.RUNNERS[stop_at] = dying
    try:
        with pytest.raises(SystemExit):
            certification.certification_run(run.pk)
    finally:
        certification.RUNNERS.clear()
        certification.RUNNERS.update(original)
    run.refresh_from_db()
    assert run.status == CertificationStatus.RUNNING and _results(run)["tender_status"] == "pending"

    # Taken over minutes later: the resent tender must be the very same body under the same key.
    with time_machine.travel(timezone.now() + timedelta(minutes=5)):
        resumed = certification.certification_run(run.pk)

    failures = [(c["name"], c.get("detail")) for c in resumed.checks if c["status"] != "passed"]
    assert resumed.status == CertificationStatus.PASSED, failures
    assert sandbox.tender_count() == 1  # the resumed run resent its tender under the same key


def test_a_run_needs_a_public_sandbox_url_and_only_one_runs_at_a_time(
    carrier: Carrier, manager: User, settings: Any
) -> None:
    actor = Actor.for_user(manager)
    certification.certification_start(carrier_id=carrier.pk, actor=actor)
    with pytest.raises(DomainError, match="already under way"):
        certification.certification_start(carrier_id=carrier.pk, actor=actor)
    CertificationRun.objects.all().delete()
    settings.EGRESS_ALLOWED_NETWORKS = []
    with pytest.raises(DomainError, match="loopback"):
        certification.certification_start(carrier_id=carrier.pk, actor=actor)


def test_the_portal_starts_a_run_and_shows_its_checks(
    carrier: Carrier, django_capture_on_commit_callbacks: Any
) -> None:
    client = _portal_client()
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/portal/certification/")

    run = CertificationRun.objects.get(carrier=carrier)
    assert answer.status_code == 302 and answer["Location"] == f"/portal/certification/{run.pk}/"
    page = client.get(answer["Location"]).content.decode()
    assert run.status == CertificationStatus.QUEUED or "Passed" in page
    run.refresh_from_db()
    assert run.status == CertificationStatus.PASSED
    page = client.get(f"/portal/certification/{run.pk}/").content.decode()
    assert "Passed" in page and 'data-testid="check-idempotent_resend"' in page and "refresh" not in page
    other = Client()
    assert other.get(f"/portal/certification/{run.pk}/").status_code == 302  # anonymous: sign in


def test_a_sandbox_that_answers_later_is_cancelled_twice(carrier: Carrier, manager: User) -> None:
    later = CarrierSimulator(SimConfig(answer="async", delay_ms=3_600_000, seed=7, vehicles=["SIM-001"])).start()
    try:
        CarrierProfile.objects.filter(carrier=carrier).update(sandbox_api_url=later.url)
        sandbox_configure(later, carrier)
        run = _run(carrier, manager)
    finally:
        later.stop()

    cancel = next(c for c in run.checks if c["name"] == "tender_cancel")
    assert run.status == CertificationStatus.PASSED
    assert cancel["detail"] == "cancelled, and still cancelled when repeated" and len(cancel["evidence"]) == 2


def test_the_finished_run_is_a_signed_certificate_that_verifies_offline_and_a_tampered_one_does_not(
    carrier: Carrier, manager: User, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import subprocess
    import sys

    from missions.evidence.bundle import bundle_verify
    from missions.evidence.keys import KeyRing
    from missions.evidence.signing import evidence_signer_reset
    from tests.evidence.test_persistence import key_in_environment

    monkeypatch.delenv("EVIDENCE_PUBLIC_KEYS", raising=False)
    key = key_in_environment(monkeypatch)
    try:
        run = _run(carrier, manager)
        client = _portal_client()
        answer = client.get(f"/portal/certification/{run.pk}/certificate.json")
        assert answer.status_code == 200 and "certificate-lonestar-autonomy-llc" in answer["Content-Disposition"]
        bundle = answer.content

        report = bundle_verify(bundle, KeyRing([key.public_key_bytes]))
        assert report.ok, report.summary()
        assert f"bundle is about urn:tms-console:certification:{run.pk}" in report.checked
        record = certification.certificate_record(run)
        assert record["contract"]["version"] == "1.1.0" and record["result"] == "passed"
        assert [c["name"] for c in record["checks"]] == [n for n, _ in certification.CHECKS]
        assert (
            verified_client(manager).get(f"/carriers/onboarding/certification/{run.pk}/certificate.json").content
            == bundle
        )
        assert _portal_client_other(manager).get(f"/portal/certification/{run.pk}/certificate.json").status_code == 404

        script = certification.settings.BASE_DIR / "tools" / "verify_evidence.py"
        (tmp_path / "certificate.json").write_bytes(bundle)
        (tmp_path / "log.pub.pem").write_bytes(key.public_pem())
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        ok = subprocess.run(
            [sys.executable, str(script), "certificate.json", "--trusted-keys", "log.pub.pem"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert ok.returncode == 0 and ok.stdout.startswith("OK: evidence bundle verifies"), ok.stderr
        tampered = bundle.replace(b'"leaf_index": 0', b'"leaf_index": 1', 1)
        assert tampered != bundle
        (tmp_path / "tampered.json").write_bytes(tampered)
        bad = subprocess.run(
            [sys.executable, str(script), "tampered.json", "--trusted-keys", "log.pub.pem"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert bad.returncode == 1 and "leaf index 1 is outside the checkpoint tree of size 1" in bad.stderr
    finally:
        evidence_signer_reset()


def _portal_client_other(manager: User) -> Client:
    _accept(_invite(verified_client(manager), name="Other Carrier", email="o@o.example"), username="other-ops")
    return _portal_client("other-ops")


@pytest.mark.parametrize(
    ("faults", "failing", "hint"),
    [
        ({"non_idempotent": True}, {"idempotent_resend"}, "Keep each Idempotency-Key with its answer"),
        ({"wrong_schema": True}, {"tender_submit"}, "Answer the TenderState of docs/carrier-api.yaml."),
        ({"tokens_unchecked": True}, {"invalid_token"}, "Check every bearer token"),
        ({"unsigned_webhooks": True}, {"carrier_webhooks"}, "Sign every delivery with the sandbox webhook secret"),
        ({"clock_offset_seconds": 600}, {"carrier_telemetry"}, "Keep the vehicles' clocks on GNSS or NTP time"),
        ({"clock_offset_seconds": -120}, {"carrier_telemetry"}, "Keep the vehicles' clocks on GNSS or NTP time"),
    ],
)
def test_each_broken_sandbox_mode_fails_exactly_its_check_with_its_hint(
    carrier: Carrier, manager: User, sandbox: CarrierSimulator, faults: dict[str, Any], failing: set[str], hint: str
) -> None:
    sandbox.faults_set(**faults)

    run = _run(carrier, manager)

    assert {n for n, status in _results(run).items() if status == "failed"} == failing
    for check in run.checks:
        if check["name"] in failing:
            assert check["hint"].startswith(hint)


def test_the_carrier_side_passes_with_its_deliveries_as_evidence(carrier: Carrier, manager: User) -> None:
    run = _run(carrier, manager)

    checks = {c["name"]: c for c in run.checks}
    webhooks, telemetry = checks["carrier_webhooks"], checks["carrier_telemetry"]
    assert webhooks["status"] == telemetry["status"] == "passed"
    assert webhooks["detail"] == "1 signed webhook(s) verified"
    received = webhooks["evidence"][-1]["received"]
    assert received["accepted"] and received["headers"]["webhook-signature"].startswith("v1,")
    assert '"mission.status"' in received["body"]
    # 1 s at 5 samples a second: 6 samples, one a request, the rate measured from their stamps.
    samples, requests = re.match(r"(\d+) samples in (\d+) requests at ", telemetry["detail"]).groups()  # type: ignore[union-attr]
    assert samples == requests == "6"
    assert all(e["received"]["headers"]["authorization"] == "Bearer [redacted]" for e in telemetry["evidence"])
    assert webhooks["emitted_at"] and "emitted_at" not in telemetry  # one emit a run


def test_a_sandbox_sending_at_another_rate_than_declared_fails_the_telemetry_check(
    carrier: Carrier, manager: User, sandbox: CarrierSimulator
) -> None:
    sandbox.sandbox_set(telemetry_rate_hz=2.0)  # declared: 5

    run = _run(carrier, manager)

    telemetry = next(c for c in run.checks if c["name"] == "carrier_telemetry")
    assert {n for n, status in _results(run).items() if status == "failed"} == {"carrier_telemetry"}
    assert telemetry["detail"].endswith("samples a second, declared 5.")
    assert telemetry["hint"].startswith("Send samples at the telemetry rate declared in the portal")


def test_a_sandbox_with_a_wrong_client_secret_for_our_api_has_its_telemetry_refused(
    carrier: Carrier, manager: User, sandbox: CarrierSimulator
) -> None:
    sandbox.sandbox_set(client_secret="not-the-one-issued")

    run = _run(carrier, manager)

    telemetry = next(c for c in run.checks if c["name"] == "carrier_telemetry")
    assert {n for n, status in _results(run).items() if status == "failed"} == {"carrier_telemetry"}
    assert "telemetry requests were refused; the first: 401" in telemetry["detail"]
    assert telemetry["hint"].startswith("Take a token at token_url with the sandbox's client for our API")


def test_without_sandbox_credentials_the_carrier_side_fails_with_where_to_get_them(
    carrier: Carrier, manager: User
) -> None:
    CarrierProfile.objects.filter(carrier=carrier).update(sandbox_webhook_secret="", sandbox_partner_client=None)

    run = _run(carrier, manager)

    assert {n for n, status in _results(run).items() if status == "failed"} == {"carrier_webhooks", "carrier_telemetry"}
    hints = {c["hint"] for c in run.checks if c["status"] == "failed"}
    assert hints == {next(iter(hints))} and "Issue the sandbox's credentials in the portal" in next(iter(hints))
