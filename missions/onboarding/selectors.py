"""Onboarding reads: carriers in onboarding, an invitation by its link, a user's carrier, a profile."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, QuerySet

from missions.choices import CarrierStatus
from missions.models import (
    Carrier,
    CarrierInvitation,
    CarrierMember,
    CarrierProfile,
    CertificationDelivery,
    CertificationRun,
    ComplianceDocument,
)
from missions.onboarding.services import PROFILE_FIELDS, token_digest


def onboarding_carriers() -> QuerySet[Carrier]:
    """Carriers still onboarding, newest first, each with its invitations and members."""
    return (
        Carrier.objects.filter(status=CarrierStatus.ONBOARDING)
        .select_related("profile")
        .prefetch_related(
            Prefetch("invitations", queryset=CarrierInvitation.objects.select_related("invited_by", "accepted_by")),
            Prefetch("members", queryset=CarrierMember.objects.select_related("user")),
            Prefetch("certification_runs", queryset=CertificationRun.objects.order_by("-created_at")),
        )
        .order_by("-created_at")
    )


def invitation_by_token(token: str) -> CarrierInvitation | None:
    if not token or len(token) > 200:
        return None
    return CarrierInvitation.objects.select_related("carrier").filter(token_sha256=token_digest(token)).first()


def member_of(user: AbstractBaseUser | AnonymousUser) -> CarrierMember | None:
    if not user.is_authenticated:
        return None
    return CarrierMember.objects.select_related("carrier").filter(user_id=user.pk).first()


def carrier_profile(carrier_id: int) -> CarrierProfile | None:
    return (
        CarrierProfile.objects.filter(carrier_id=carrier_id)
        .select_related("sandbox_partner_client__application")
        .first()
    )


def carrier_documents(carrier_id: int) -> QuerySet[ComplianceDocument]:
    """A carrier's compliance documents, newest first, without their bytes."""
    return ComplianceDocument.objects.filter(carrier_id=carrier_id).defer("content").select_related("uploaded_by")


def carrier_document(carrier_id: int, pk: int) -> ComplianceDocument | None:
    """One of the carrier's documents with its PDF; None for another carrier's."""
    return ComplianceDocument.objects.filter(carrier_id=carrier_id, pk=pk).first()


def certification_runs(carrier_id: int) -> QuerySet[CertificationRun]:
    return CertificationRun.objects.filter(carrier_id=carrier_id).select_related("started_by")


def certification_run(carrier_id: int | None, pk: int) -> CertificationRun | None:
    """A run by id; with ``carrier_id``, only one of that carrier's (None for another carrier's)."""
    runs = CertificationRun.objects.select_related("carrier", "started_by").filter(pk=pk)
    if carrier_id is not None:
        runs = runs.filter(carrier_id=carrier_id)
    return runs.first()


def profile_initial(profile: CarrierProfile | None) -> dict[str, Any]:
    if profile is None:
        return {}
    return {f: getattr(profile, f) for f in PROFILE_FIELDS}  # the sandbox secret is never sent back


def run_deliveries(run_id: int, channel: str) -> list[CertificationDelivery]:
    """What a carrier's sandbox sent to a run's receivers on one channel, in the order it arrived."""
    return list(CertificationDelivery.objects.filter(run_id=run_id, channel=channel).order_by("received_at", "pk"))
