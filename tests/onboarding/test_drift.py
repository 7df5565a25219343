"""The drift watch: a live carrier smoke-checked daily, contract versions compared, re-certified by a date."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from missions.choices import CarrierStatus
from missions.events import Actor
from missions.models import Carrier, CarrierProfile, CertificationRun
from missions.onboarding import certification, drift
from missions.simulators.carrier import CarrierSimulator
from runbooks.models import Incident

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(carrier: Carrier, manager: User) -> Carrier:
    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    assert certification.certification_run(run.pk).status == "passed"
    Carrier.objects.filter(pk=carrier.pk).update(status=CarrierStatus.ACTIVE, paused_reason="")
    carrier.refresh_from_db()
    return carrier


def test_a_conformant_live_carrier_is_smoke_checked_once_a_day_and_left_alone(live: Carrier) -> None:
    first = drift.drift_watch()
    again = drift.drift_watch()

    assert (first.checked, first.drifted, first.paused) == (1, 0, 0) and again.drifted == 0
    smoke = CertificationRun.objects.filter(carrier=live, kind="smoke")
    assert smoke.count() == 1 and smoke.get().status == "passed"
    assert {c["name"] for c in smoke.get().checks} == set(certification.SMOKE_CHECKS)
    assert not Incident.objects.exists()


def test_a_failing_smoke_check_opens_a_ticket_sets_a_date_then_pauses_and_recertifying_resumes(
    live: Carrier, manager: User, sandbox: CarrierSimulator
) -> None:
    sandbox.faults_set(malformed=True)

    result = drift.drift_watch()

    assert result.drifted == 1
    profile = CarrierProfile.objects.get(carrier=live)
    assert profile.recertify_by == timezone.localdate() + timedelta(days=30)
    assert "nightly smoke check failed (health" in profile.drift_reason
    incident = Incident.objects.get(kind="carrier_drift")
    assert incident.severity == "warning" and incident.carrier_id == live.pk
    assert "re-certification due by" in incident.title
    live.refresh_from_db()
    assert live.status == CarrierStatus.ACTIVE  # within its grace period

    with time_machine.travel(timezone.now() + timedelta(days=31)):
        late = drift.drift_watch()
    live.refresh_from_db()
    assert late.paused == 1 and live.status == CarrierStatus.PAUSED
    assert live.paused_reason.startswith("Drift: re-certification was due by")
    assert Incident.objects.filter(kind="carrier_drift").count() == 1  # the open one, not a second

    sandbox.faults_clear()
    with time_machine.travel(timezone.now() + timedelta(days=32)):
        run = certification.certification_start(carrier_id=live.pk, actor=Actor.for_user(manager))
        assert certification.certification_run(run.pk).status == "passed"
        cleared = drift.drift_watch()
    live.refresh_from_db()
    profile.refresh_from_db()
    assert cleared.cleared == 1 and live.status == CarrierStatus.ACTIVE and live.paused_reason == ""
    assert profile.recertify_by is None and profile.drift_reason == ""


def test_a_new_contract_version_after_a_deploy_requires_recertification(
    live: Carrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certification, "contract_version", lambda: "2.0.0")

    call_command("onboarding_drift_check", "--no-smoke")

    profile = CarrierProfile.objects.get(carrier=live)
    assert profile.drift_reason == "certified for carrier API 1.1.0, now 2.0.0"
    assert Incident.objects.filter(kind="carrier_drift", carrier=live).exists()
    assert not CertificationRun.objects.filter(kind="smoke").exists()
