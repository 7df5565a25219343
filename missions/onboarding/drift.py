"""The drift watch: live carriers stay conformant after go-live.

Once a day per carrier (beat runs it hourly; ``smoke_checked_on`` keeps it to
once) and after each deploy of ours (``manage.py onboarding_drift_check``, the
post-deploy step), for every live carrier that onboarded through the portal:

* **contract drift**: the carrier's latest passing certification is for an
  older version of ``docs/carrier-api.yaml`` than the one now served;
* **sandbox drift**: the nightly smoke subset of the certification
  (``certification.SMOKE_CHECKS``: token, health, an unknown tender's 404
  problem, latency; no tender is sent) fails.

Either opens a ticket-severity incident (``carrier_drift``, warning: it has no
runbook and pages no one) and sets a date by which the carrier must pass a full
certification again: ``RECERTIFICATION_GRACE_DAYS`` after the drift was first
seen. A passing full certification for the current contract clears both. A
carrier still drifted after that date is paused (the reason on its page); the
pause is lifted by the watch when it certifies again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from missions import services as core_services
from missions.choices import CarrierStatus
from missions.events import Actor
from missions.models import Carrier, CarrierProfile, CertificationRun, CertificationStatus
from missions.onboarding import certification
from runbooks.choices import IncidentSeverity
from runbooks.services import incident_open

WATCH = Actor.system("drift watch")
INCIDENT_KIND = "carrier_drift"


@dataclass
class DriftResult:
    checked: int = 0
    drifted: int = 0
    paused: int = 0
    cleared: int = 0


def _certified_version(carrier_id: int) -> str | None:
    """The contract version of the carrier's latest passing full certification."""
    return (
        CertificationRun.objects.filter(carrier_id=carrier_id, kind="full", status=CertificationStatus.PASSED)
        .order_by("-finished_at")
        .values_list("contract_version", flat=True)
        .first()
    )


def _drift(profile: CarrierProfile, reason: str, *, today: date) -> bool:
    """Record a drift (once: the first date stands); True when it is new."""
    carrier = profile.carrier
    new = not profile.recertify_by
    if new:
        profile.recertify_by = today + timedelta(days=settings.RECERTIFICATION_GRACE_DAYS)
    due = profile.recertify_by
    assert due is not None
    if not new and profile.drift_reason == reason[:300]:
        return False  # the same drift as at the last pass: its incident says so already
    profile.drift_reason = reason[:300]
    profile.save(update_fields=["drift_reason", "recertify_by", "updated_at"])
    incident_open(
        actor=WATCH,
        kind=INCIDENT_KIND,
        title=f"{carrier.name}: re-certification due by {due:%Y-%m-%d}",
        severity=IncidentSeverity.WARNING,
        carrier=carrier,
        summary=f"{reason}. The carrier must pass a full certification run by {due:%Y-%m-%d}"
        " or tendering to it pauses.",
        data={"reason": reason, "recertify_by": due.isoformat()},
    )
    return new


def _clear(profile: CarrierProfile) -> None:
    carrier = Carrier.objects.select_for_update().get(pk=profile.carrier_id)
    if (
        profile.drift_pause_reason
        and carrier.status == CarrierStatus.PAUSED
        and carrier.paused_reason == profile.drift_pause_reason
    ):
        core_services.carrier_resume(carrier_id=carrier.pk, actor=WATCH)
    profile.drift_reason, profile.recertify_by, profile.drift_pause_reason = "", None, ""
    profile.save(update_fields=["drift_reason", "recertify_by", "drift_pause_reason", "updated_at"])


def drift_watch(*, today: date | None = None, smoke: bool = True, force: bool = False) -> DriftResult:
    """One pass over the live carriers (see the module's text); ``force`` smoke-checks again the same day."""
    today = today or timezone.localdate()
    result = DriftResult()
    current = certification.contract_version()
    profiles = CarrierProfile.objects.select_related("carrier").filter(
        carrier__status__in=[CarrierStatus.ACTIVE, CarrierStatus.PAUSED]
    )
    for profile in profiles:
        result.checked += 1
        version = _certified_version(profile.carrier_id)
        reasons = []
        if version != current:
            reasons.append(f"certified for carrier API {version or 'no version'}, now {current}")
        if smoke and profile.sandbox_api_url and (force or profile.smoke_checked_on != today):
            run = certification.smoke_start(carrier_id=profile.carrier_id)
            if run is not None:
                run = certification.certification_run(run.pk)
                profile.smoke_checked_on = today
                profile.save(update_fields=["smoke_checked_on", "updated_at"])
                failed = [c["name"] for c in run.checks if c["status"] == "failed"]
                if failed:
                    reasons.append(f"the nightly smoke check failed ({', '.join(failed)}; run {run.pk})")
        with transaction.atomic():
            profile = CarrierProfile.objects.select_for_update().select_related("carrier").get(pk=profile.pk)
            if not reasons:
                if profile.recertify_by or profile.drift_pause_reason:
                    _clear(profile)
                    result.cleared += 1
                continue
            if _drift(profile, "; ".join(reasons), today=today):
                result.drifted += 1
            carrier = Carrier.objects.select_for_update().get(pk=profile.carrier_id)
            overdue = profile.recertify_by is not None and today > profile.recertify_by
            if overdue and carrier.status == CarrierStatus.ACTIVE:
                reason = f"Drift: re-certification was due by {profile.recertify_by:%Y-%m-%d} ({profile.drift_reason})"
                core_services.carrier_pause(carrier_id=carrier.pk, actor=WATCH, reason=reason[:300])
                profile.drift_pause_reason = reason[:300]
                profile.save(update_fields=["drift_pause_reason", "updated_at"])
                result.paused += 1
    return result
