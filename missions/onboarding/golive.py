"""The go-live gate: an onboarding carrier is offered production tenders only once it may be, and a manager approved.

It may go live while it holds all three:

* a passing certification run for the current version of the carrier API
  contract (``docs/carrier-api.yaml``);
* an SLA contract in force today (``sla.Contract``: its SLOs and credits);
* a current certificate of insurance (``missions.onboarding.compliance``);

and its profile names its production API and client, which the approval copies
to the carrier's API settings: the console tenders there from then on.

A carrier manager approves the move from onboarding to active in the console
(``carrier.went_live``); the approval is refused, with the reasons, while any is
missing. Until then the carrier's page, the portal and the tender form say what is
missing: the reasons are kept on the carrier (``paused_reason`` while onboarding),
so the core's eligibility check can name them without knowing about onboarding.
"""

from __future__ import annotations

from datetime import date

from django.db import transaction
from django.utils import timezone

from missions.choices import CarrierStatus
from missions.events import Actor, event_record
from missions.models import Carrier, CarrierProfile, CertificationRun, CertificationStatus, ComplianceKind
from missions.onboarding.certification import contract_version
from missions.onboarding.compliance import current_documents
from sla.selectors import contract_in_force
from tms_console.domain import DomainError


def golive_blockers(carrier_id: int, *, today: date | None = None) -> list[str]:
    """What the carrier still lacks to go live, in words; empty when it may."""
    today = today or timezone.localdate()
    missing: list[str] = []
    version = contract_version()
    certified = CertificationRun.objects.filter(
        carrier_id=carrier_id, kind="full", status=CertificationStatus.PASSED, contract_version=version
    ).exists()
    if not certified:
        missing.append(f"no passing certification for carrier API {version}")
    if contract_in_force(carrier_id, today) is None:
        missing.append("no SLA contract in force")
    profile = CarrierProfile.objects.filter(carrier_id=carrier_id).first()
    if profile is None or not (profile.production_api_url and profile.production_client_id):
        missing.append("no production API URL and client id in the profile")
    elif not profile.production_client_secret:
        missing.append("no production client secret in the profile")
    insured = any(
        d.kind == ComplianceKind.INSURANCE and d.effective_on <= today <= d.expires_on
        for d in current_documents(carrier_id)
    )
    if not insured:
        missing.append("no valid certificate of insurance")
    return missing


def onboarding_reason_refresh(carrier_id: int) -> None:
    """Keep an onboarding carrier's stated reason (shown where it is not offered) in line with its blockers."""
    with transaction.atomic():
        carrier = Carrier.objects.select_for_update().filter(pk=carrier_id).first()
        if carrier is None or carrier.status != CarrierStatus.ONBOARDING:
            return
        missing = golive_blockers(carrier_id)
        reason = ("not live yet: " + "; ".join(missing)) if missing else "ready to go live, awaiting approval"
        if carrier.paused_reason != reason[:300]:
            carrier.paused_reason = reason[:300]
            carrier.save(update_fields=["paused_reason"])


def onboarding_reasons_refresh() -> int:
    """Refresh every onboarding carrier's stated reason; how many carriers were looked at."""
    ids = list(Carrier.objects.filter(status=CarrierStatus.ONBOARDING).values_list("pk", flat=True))
    for carrier_id in ids:
        onboarding_reason_refresh(carrier_id)
    return len(ids)


@transaction.atomic
def carrier_go_live(*, carrier_id: int, actor: Actor) -> Carrier:
    """The carrier manager's approval: onboarding -> active, only with nothing missing."""
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    if carrier.status != CarrierStatus.ONBOARDING:
        raise DomainError(f"{carrier.name} is not onboarding (it is {carrier.get_status_display().lower()}).")
    missing = golive_blockers(carrier_id)
    if missing:
        raise DomainError(f"{carrier.name} cannot go live yet: " + "; ".join(missing) + ".")
    run = (
        CertificationRun.objects.filter(
            carrier_id=carrier_id, kind="full", status=CertificationStatus.PASSED, contract_version=contract_version()
        )
        .order_by("-finished_at")
        .first()
    )
    profile = CarrierProfile.objects.get(carrier_id=carrier_id)
    # From now on the console tenders to the carrier's production API with its production client.
    carrier.api_base_url = profile.production_api_url.rstrip("/")
    carrier.api_client_id = profile.production_client_id
    carrier.api_client_secret = profile.production_client_secret
    carrier.status, carrier.paused_reason = CarrierStatus.ACTIVE, ""
    carrier.save(update_fields=["status", "paused_reason", "api_base_url", "api_client_id", "api_client_secret"])
    event_record(
        actor=actor,
        action="carrier.went_live",
        subject_type="carrier",
        subject_id=carrier.pk,
        before={"status": CarrierStatus.ONBOARDING},
        after={
            "status": carrier.status,
            "certification_run": run.pk if run else None,
            "api_base_url": carrier.api_base_url,
        },
        carrier=carrier,
    )
    return carrier
