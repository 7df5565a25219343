"""Drift between the buckets and a recount from raw rows (``manage.py sla_recount``, daily by beat).

The recount is the SLA engine's reference definition (``sla.selectors.sli_all``):
the buckets must give the same good and total counts (and values) for every
SLI and window. On drift the daily run opens an ``sla_rollup_drift`` incident
and, asked to, repairs the carrier's buckets by recomputing its missions and
re-applying its calls (``rollups.carrier_rebuild``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from missions.events import Actor
from missions.models import Carrier
from runbooks.choices import IncidentSeverity
from runbooks.services import incident_open
from sla import rollups
from sla.bucket_reads import sli_all_buckets
from sla.choices import SLIName
from sla.selectors import contract_in_force, sli_all
from sla.sli import SLIResult, Targets, Window, alert_windows_at, windows_at

LATENCY_BOUND = 0.01  # the p99 latency from buckets is a bin midpoint (rollups.LATENCY_GAMMA)


@dataclass
class Drift:
    carrier_id: int
    windows: list[str]
    differences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.differences


def _differ(sli: str, bucket: SLIResult, raw: SLIResult) -> bool:
    if (bucket.good, bucket.total) != (raw.good, raw.total):
        return True
    if sli == SLIName.API_LATENCY:
        if (bucket.value is None) != (raw.value is None):
            return True
        if bucket.value is not None and raw.value is not None:
            return abs(float(bucket.value) - float(raw.value)) > LATENCY_BOUND * float(raw.value) + 0.0001
        return False
    return bucket.value != raw.value


def drift_find(carrier_id: int, windows: list[Window], *, catch_up: bool = True) -> Drift:
    """Compare every SLI over ``windows`` from the buckets with a recount of the raw rows."""
    targets = Targets.of(contract_in_force(carrier_id, windows[0].end.date()))
    if catch_up:
        rollups.rollup_run(max_seconds=300)
    drift = Drift(carrier_id, [w.name for w in windows])
    buckets = sli_all_buckets(carrier_id, windows, targets)
    raw = sli_all(carrier_id, windows, targets)
    if buckets is None:
        drift.differences.append({"reason": "buckets built for other contract figures; a rebuild is due"})
        return drift
    for key, expected in raw.items():
        got = buckets[key]
        if _differ(key[0], got, expected):
            drift.differences.append({
                "sli": key[0], "window": key[1],
                "buckets": {"good": got.good, "total": got.total, "value": str(got.value)},
                "recount": {"good": expected.good, "total": expected.total, "value": str(expected.value)},
            })  # fmt: skip
    return drift


def default_windows(now: datetime) -> list[Window]:
    return [*windows_at(now), *alert_windows_at(now)]


def drift_check_all(*, now: datetime | None = None, repair: bool = True) -> list[Drift]:
    """The daily check: every carrier with a contract; an incident for each carrier that drifted."""
    now = now or timezone.now()
    found = []
    for carrier in Carrier.objects.filter(contracts__isnull=False).distinct().order_by("pk"):
        drift = drift_find(carrier.pk, default_windows(now))
        if drift.clean:
            continue
        found.append(drift)
        incident_open(
            actor=Actor.system("sla"),
            kind="sla_rollup_drift",
            title=f"{carrier.name}: SLA buckets disagree with a recount",
            severity=IncidentSeverity.WARNING,
            carrier=carrier,
            summary=f"{len(drift.differences)} SLI windows differ from the raw recount"
            + ("; the carrier's buckets were rebuilt." if repair else "."),
            data={"differences": drift.differences[:20]},
        )
        if repair:
            rollups.carrier_rebuild(carrier.pk)
    return found
