"""Compliance documents: the certificate of insurance and operating permits, checked on upload and watched daily.

A document is accepted when it is a PDF within ``COMPLIANCE_DOCUMENT_MAX_BYTES``,
its dates make sense and have not passed, and (insurance) its coverage meets
``INSURANCE_MIN_AUTO_LIABILITY_USD`` and ``INSURANCE_MIN_CARGO_USD``; anything
else is refused whole, with the reason.

What counts for a carrier is, for each kind (and, for permits, each state), the
accepted document that runs longest. The daily watch (``compliance_watch``, beat):

* warns the carrier's portal members and the carrier managers
  ``COMPLIANCE_WARNING_DAYS`` (30 and 7) days before that document expires,
  each warning once, and records ``carrier.compliance_expiring``;
* when one has expired (the day after ``expires_on``) pauses tendering to the
  carrier with the reason on its page and in the audit trail
  (``carrier.paused`` by the system), unless it is already paused or still
  onboarding (never tendered to anyway);

and an accepted upload that leaves nothing expired resumes a carrier the watch
paused (not one a person paused for another reason).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from missions import services as core_services
from missions.choices import CarrierStatus
from missions.events import Actor, event_record
from missions.models import Carrier, CarrierMember, CarrierProfile, ComplianceDocument, ComplianceKind
from tms_console.domain import DomainError
from tms_console.roles import MANAGE_CARRIERS, perm

log = logging.getLogger(__name__)

STATE_RE = re.compile(r"^[A-Z]{2}$")
WATCH = Actor.system("compliance watch")


def pdf_problem(content: bytes) -> str | None:
    """Why ``content`` is not a PDF file we keep, or None."""
    limit = settings.COMPLIANCE_DOCUMENT_MAX_BYTES
    if not content:
        return "The file is empty."
    if len(content) > limit:
        return f"The file is {len(content):,} bytes; the most is {limit:,} bytes."
    # The header may follow a little garbage, the end-of-file marker some trailing whitespace.
    if b"%PDF-" not in content[:1024]:
        return "The file is not a PDF (it does not begin with %PDF-)."
    if b"%%EOF" not in content[-2048:]:
        return "The PDF is cut short (its %%EOF end marker is missing)."
    return None


@dataclass(frozen=True)
class DocumentFacts:
    kind: str
    filename: str
    content: bytes
    effective_on: date
    expires_on: date
    state: str = ""
    insurer: str = ""
    policy_number: str = ""
    auto_liability_usd: Decimal | None = None
    cargo_usd: Decimal | None = None


def document_errors(facts: DocumentFacts, *, today: date) -> dict[str, str]:
    errors: dict[str, str] = {}
    problem = pdf_problem(facts.content)
    if problem:
        errors["file"] = problem
    if facts.kind not in ComplianceKind.values:
        errors["kind"] = "Choose the kind of document."
    if facts.effective_on > facts.expires_on:
        errors["expires_on"] = "The document expires before it takes effect."
    elif facts.expires_on < today:
        errors["expires_on"] = f"The document expired on {facts.expires_on:%Y-%m-%d}; upload a current one."
    if facts.kind == ComplianceKind.PERMIT and not STATE_RE.match(facts.state):
        errors["state"] = "A permit names its state as a two-letter code (e.g. TX)."
    if facts.kind == ComplianceKind.INSURANCE:
        if not facts.insurer.strip():
            errors["insurer"] = "Enter the insurer."
        if not facts.policy_number.strip():
            errors["policy_number"] = "Enter the policy number."
        minimum_auto = Decimal(settings.INSURANCE_MIN_AUTO_LIABILITY_USD)
        minimum_cargo = Decimal(settings.INSURANCE_MIN_CARGO_USD)
        if facts.auto_liability_usd is None or facts.auto_liability_usd < minimum_auto:
            errors["auto_liability_usd"] = f"Auto liability coverage must be at least USD {minimum_auto:,.0f}."
        if facts.cargo_usd is None or facts.cargo_usd < minimum_cargo:
            errors["cargo_usd"] = f"Cargo coverage must be at least USD {minimum_cargo:,.0f}."
    return errors


def current_documents(carrier_id: int) -> list[ComplianceDocument]:
    """For each kind and state, the accepted document that runs longest (without the PDF bytes)."""
    best: dict[tuple[str, str], ComplianceDocument] = {}
    rows = ComplianceDocument.objects.filter(carrier_id=carrier_id).defer("content").order_by("expires_on", "pk")
    for document in rows:
        best[(document.kind, document.state)] = document
    return sorted(best.values(), key=lambda d: (d.kind, d.state))


def expired_documents(carrier_id: int, *, today: date) -> list[ComplianceDocument]:
    return [d for d in current_documents(carrier_id) if d.expires_on < today]


def _pause_reason(expired: list[ComplianceDocument]) -> str:
    first = expired[0]
    what = first.get_kind_display() + (f" ({first.state})" if first.state else "")
    more = f" and {len(expired) - 1} more" if len(expired) > 1 else ""
    return f"Compliance: {what} expired on {first.expires_on:%Y-%m-%d}{more}; upload a current one in the portal."[:300]


@transaction.atomic
def document_add(*, carrier_id: int, facts: DocumentFacts, actor: Actor) -> ComplianceDocument:
    """Accept a document (or refuse it whole); resume a carrier the watch paused once nothing has expired."""
    today = timezone.localdate()
    errors = document_errors(facts, today=today)
    if errors:
        field, message = next(iter(errors.items()))
        raise DomainError(message, field=field)
    if actor.user is None:
        raise DomainError("Only a signed-in user can upload a document.")
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    document = ComplianceDocument.objects.create(
        carrier=carrier,
        kind=facts.kind,
        state=facts.state if facts.kind == ComplianceKind.PERMIT else "",
        filename=facts.filename[:200],
        content=facts.content,
        size=len(facts.content),
        sha256=hashlib.sha256(facts.content).hexdigest(),
        insurer=facts.insurer.strip(),
        policy_number=facts.policy_number.strip(),
        auto_liability_usd=facts.auto_liability_usd,
        cargo_usd=facts.cargo_usd,
        effective_on=facts.effective_on,
        expires_on=facts.expires_on,
        uploaded_by=actor.user,
    )
    event_record(
        actor=actor,
        action="carrier.compliance_document_added",
        subject_type="carrier",
        subject_id=carrier.pk,
        after={
            "document_id": document.pk,
            "kind": document.kind,
            "state": document.state,
            "sha256": document.sha256,
            "size": document.size,
            "effective_on": document.effective_on.isoformat(),
            "expires_on": document.expires_on.isoformat(),
        },
        carrier=carrier,
    )
    _resume_if_cleared(carrier, today=today)
    return document


def _resume_if_cleared(carrier: Carrier, *, today: date) -> None:
    profile = CarrierProfile.objects.select_for_update().filter(carrier=carrier).first()
    if profile is None or not profile.compliance_pause_reason:
        return
    if expired_documents(carrier.pk, today=today):
        return
    if carrier.status == CarrierStatus.PAUSED and carrier.paused_reason == profile.compliance_pause_reason:
        core_services.carrier_resume(carrier_id=carrier.pk, actor=WATCH)
    profile.compliance_pause_reason = ""
    profile.save(update_fields=["compliance_pause_reason", "updated_at"])


def _recipients(carrier: Carrier) -> list[str]:
    members = CarrierMember.objects.filter(carrier=carrier).select_related("user")
    found = {m.user.email for m in members if m.user.email}
    managers = User.objects.filter(
        Q(groups__permissions__codename=MANAGE_CARRIERS) | Q(user_permissions__codename=MANAGE_CARRIERS),
        is_active=True,
    ).distinct()
    found |= {u.email for u in managers if u.email and u.has_perm(perm(MANAGE_CARRIERS))}
    return sorted(found)


def _warn(document: ComplianceDocument, days_left: int, threshold: int) -> None:
    carrier = document.carrier
    what = document.get_kind_display() + (f" ({document.state})" if document.state else "")
    recipients = _recipients(carrier)
    if recipients:
        try:
            send_mail(
                subject=f"{carrier.name}: {what} expires in {days_left} days",
                message=(
                    f"The {what} of {carrier.name} expires on {document.expires_on:%Y-%m-%d}.\n"
                    "Upload a current one in the carrier portal before then: on expiry, tendering to"
                    " the carrier pauses by itself."
                ),
                from_email=None,
                recipient_list=recipients,
            )
        except OSError:
            log.warning("compliance warning not mailed", extra={"carrier": carrier.slug, "document": document.pk})
    event_record(
        actor=WATCH,
        action="carrier.compliance_expiring",
        subject_type="carrier",
        subject_id=carrier.pk,
        after={
            "document_id": document.pk,
            "kind": document.kind,
            "state": document.state,
            "expires_on": document.expires_on.isoformat(),
            "days_left": days_left,
            "warning": threshold,
            "mailed_to": len(recipients),
        },
        carrier=carrier,
    )


@dataclass
class WatchResult:
    warned: int = 0
    paused: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"warned": self.warned, "paused": self.paused}


def compliance_watch(*, today: date | None = None) -> WatchResult:
    """One pass over every carrier holding compliance documents (beat runs it daily); idempotent."""
    today = today or timezone.localdate()
    result = WatchResult()
    thresholds = sorted(settings.COMPLIANCE_WARNING_DAYS, reverse=True)
    carrier_ids = ComplianceDocument.objects.values_list("carrier_id", flat=True).distinct()
    for carrier_id in list(carrier_ids):
        with transaction.atomic():
            carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
            documents = current_documents(carrier_id)
            for document in documents:
                days_left = (document.expires_on - today).days
                due = [t for t in thresholds if 0 <= days_left <= t and t not in document.warnings_sent]
                if due:
                    threshold = min(due)
                    _warn(document, days_left, threshold)
                    # The nearer warning covers the farther ones it passed in the meantime.
                    document.warnings_sent = sorted({*document.warnings_sent, *due})
                    document.save(update_fields=["warnings_sent"])
                    result.warned += 1
            expired = [d for d in documents if d.expires_on < today]
            if expired and carrier.status == CarrierStatus.ACTIVE:
                reason = _pause_reason(expired)
                core_services.carrier_pause(carrier_id=carrier.pk, actor=WATCH, reason=reason)
                CarrierProfile.objects.update_or_create(
                    carrier=carrier, defaults={"compliance_pause_reason": reason}, create_defaults={
                        "legal_name": carrier.name, "compliance_pause_reason": reason
                    },
                )  # fmt: skip
                result.paused += 1
    return result
