"""The marketplace view: certified, live carriers side by side for a lane, with the facts a dispatcher chooses on.

For each carrier: whether its operating regions cover the lane, its operating
design domain (autonomy level, hazmat, weight, hours, weather), its price terms
(the SLA contract in force: monthly fee and credit schedule; the fallback rate
for fallback carriers), its SLA record over the rolling 30 days (on-time,
mission success, telemetry integrity, as the SLA engine last stored them) and
the date of its passing certification for the current carrier API contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Max
from django.utils import timezone

from missions.choices import CarrierStatus
from missions.models import Carrier, CarrierProfile, CertificationRun, CertificationStatus
from missions.onboarding.certification import contract_version
from sla.choices import SLIName, WindowName
from sla.models import SLIMeasurement
from sla.selectors import contract_in_force

REGION_RE = re.compile(r"^[A-Z]{2}$")
RECORD_SLIS = (SLIName.ON_TIME, SLIName.MISSION_SUCCESS, SLIName.TELEMETRY_INTEGRITY)


@dataclass
class MarketRow:
    carrier: Carrier
    profile: CarrierProfile | None
    covers_lane: bool
    certified_at: datetime | None
    monthly_fee_usd: Decimal | None
    credit_schedule: list[dict[str, Any]]
    record: dict[str, Decimal | None]


def lane_error(origin: str, destination: str) -> str | None:
    if not origin and not destination:
        return None
    if not (REGION_RE.match(origin) and REGION_RE.match(destination)):
        return "A lane is two two-letter state codes, e.g. TX to OK."
    return None


def _covers(carrier: Carrier, origin: str, destination: str) -> bool:
    regions = carrier.operating_regions or []
    if not regions or not origin:
        return True  # empty: anywhere
    return origin in regions and destination in regions


def market(origin: str = "", destination: str = "") -> list[MarketRow]:
    """Live carriers holding a passing certification for the current contract; those covering the lane first."""
    version = contract_version()
    certified = dict(
        CertificationRun.objects.filter(kind="full", status=CertificationStatus.PASSED, contract_version=version)
        .values("carrier_id")
        .annotate(at=Max("finished_at"))
        .values_list("carrier_id", "at")
    )
    carriers = Carrier.objects.filter(pk__in=certified, status=CarrierStatus.ACTIVE).select_related("profile")
    today = timezone.localdate()
    measured: dict[tuple[int, str], Decimal | None] = {}
    latest = (
        SLIMeasurement.objects.filter(carrier_id__in=certified, window=WindowName.D30, sli__in=RECORD_SLIS)
        .order_by("carrier_id", "sli", "-computed_at")
        .values("carrier_id", "sli", "value")
    )
    for row in latest:
        measured.setdefault((row["carrier_id"], row["sli"]), row["value"])
    rows = []
    for carrier in carriers:
        contract = contract_in_force(carrier.pk, today)
        rows.append(
            MarketRow(
                carrier=carrier,
                profile=getattr(carrier, "profile", None),
                covers_lane=_covers(carrier, origin, destination),
                certified_at=certified.get(carrier.pk),
                monthly_fee_usd=contract.monthly_fee_usd if contract else None,
                credit_schedule=list(contract.credit_schedule) if contract else [],
                record={sli.value: measured.get((carrier.pk, sli.value)) for sli in RECORD_SLIS},
            )
        )
    rows.sort(key=lambda r: (not r.covers_lane, -(r.record.get(SLIName.ON_TIME) or Decimal(0)), r.carrier.name))
    return rows
