"""Reads for route plans: a mission's latest verified plan, a carrier's keys."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet
from django.utils import timezone

from missions.models import CarrierSigningKey, RoutePlan


def plan_latest(*, mission_id: int) -> RoutePlan | None:
    """The mission's plan: its highest verified version (it supersedes every earlier one)."""
    return RoutePlan.objects.filter(mission_id=mission_id).select_related("signing_key").order_by("-version").first()


def plan_is_current(plan: RoutePlan | None, *, now: datetime | None = None) -> bool:
    now = now or timezone.now()
    return plan is not None and plan.valid_from <= now < plan.valid_until


def plans_of_mission(*, mission_id: int) -> QuerySet[RoutePlan]:
    return RoutePlan.objects.filter(mission_id=mission_id).select_related("signing_key").order_by("-version")


def signing_keys(*, carrier_id: int | None = None) -> QuerySet[CarrierSigningKey]:
    keys = CarrierSigningKey.objects.select_related("carrier", "created_by")
    if carrier_id is not None:
        keys = keys.filter(carrier_id=carrier_id)
    return keys.order_by("carrier__name", "retired_at", "-created_at")
