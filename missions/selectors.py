"""Read queries for the console, the API and tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, QuerySet

from missions import flags
from missions.choices import CarrierKind, CarrierStatus, CircuitState
from missions.models import AuditEvent, Carrier, CarrierFlag, Mission, Shipment, Tender
from missions.routes import GREAT_CIRCLE_BASIS, route_plan
from missions.transitions import MISSION_ACTIVE, TENDER_OPEN

# A level 5 carrier without its corridor flag, or off a corridor, is tendered at this level (safety driver aboard).
SUPERVISED_AUTONOMY_LEVEL = 4
# Ranking bonus of driverless (level 5) capacity on a corridor lane: ahead of level 4 capacity and of the
# fallback bonus, behind nothing that makes a carrier autonomous.
L5_CORRIDOR_BONUS = 0.75


@dataclass
class CarrierFit:
    """One carrier's eligibility for a shipment: eligible, or the reasons it is not."""

    carrier: Carrier
    reasons: list[str] = field(default_factory=list)
    score: float = 0.0

    @property
    def eligible(self) -> bool:
        return not self.reasons


def on_corridor(shipment: Shipment) -> bool:
    """True when the shipment's lane follows a known interstate corridor (``missions.routes``)."""
    points = (shipment.origin_lat, shipment.origin_lon, shipment.destination_lat, shipment.destination_lon)
    if any(p is None for p in points):  # a draft on the new-shipment form: no coordinates yet
        return False
    plan = route_plan((shipment.origin_lat, shipment.origin_lon), (shipment.destination_lat, shipment.destination_lon))
    return plan.basis != GREAT_CIRCLE_BASIS


def tendered_autonomy_level(*, carrier: Carrier, shipment: Shipment) -> int:
    """The level the carrier's trucks would run this load at.

    A level 5 carrier runs level 5 only with its corridor flag on, on a corridor
    lane, for a shipment that allows level 5; otherwise it runs supervised, at
    level 4. So the flag never makes a carrier less eligible.
    """
    level = carrier.max_autonomy_level
    if level <= SUPERVISED_AUTONOMY_LEVEL:
        return level
    limit = shipment.max_autonomy_level
    if limit is not None and limit <= SUPERVISED_AUTONOMY_LEVEL:
        return SUPERVISED_AUTONOMY_LEVEL
    if flags.flag_enabled(carrier, flags.L5_CORRIDORS) and on_corridor(shipment):
        return level
    return SUPERVISED_AUTONOMY_LEVEL


def carrier_fit(*, carrier: Carrier, shipment: Shipment) -> CarrierFit:
    """Why ``carrier`` can or cannot take ``shipment``; every failing rule is listed.

    The carrier's feature flags (``missions.flags``) gate the new autonomy
    capabilities: night driving, driverless hazmat and level 5 on corridors.
    """
    reasons: list[str] = []
    if carrier.status == CarrierStatus.PAUSED:
        reasons.append(f"paused: {carrier.paused_reason}")
    elif carrier.status == CarrierStatus.ONBOARDING:
        # What it still lacks to go live, kept on the carrier by missions.onboarding.
        reasons.append(f"onboarding: {carrier.paused_reason or 'not live yet'}")
    if shipment.hazmat and not carrier.hazmat_allowed:
        reasons.append("hazmat not allowed")
    elif shipment.hazmat and carrier.is_autonomous and not flags.flag_enabled(carrier, flags.HAZMAT_LANES):
        reasons.append("hazmat lanes flag off")
    night = shipment.needs_night_operations and carrier.is_autonomous
    if night and not flags.flag_enabled(carrier, flags.NIGHT_OPERATIONS):
        reasons.append("night operations flag off")
    if shipment.weight_kg > carrier.max_weight_kg:
        reasons.append(f"weight {shipment.weight_kg} kg over the carrier's {carrier.max_weight_kg} kg")
    limit = shipment.max_autonomy_level
    level = tendered_autonomy_level(carrier=carrier, shipment=shipment) if carrier.is_autonomous else 0
    if carrier.is_autonomous and limit is not None and level > limit:
        reasons.append(f"autonomy level {level} above the shipment's limit {limit}")
    regions = set(carrier.operating_regions or [])
    if regions:
        outside = [r for r in (shipment.origin_region, shipment.destination_region) if r and r not in regions]
        if outside:
            reasons.append(f"outside operating regions ({', '.join(sorted(set(outside)))})")
    circuit = getattr(carrier, "circuit", None)
    if circuit is not None and circuit.state == CircuitState.OPEN:
        reasons.append(f"circuit open: {circuit.last_failure_reason or 'carrier API failing'}")
    if carrier.is_autonomous and carrier.fleet_paused:
        reasons.append(f"fleet paused after degradation: {carrier.fleet_paused_reason}")
    score = 0.0
    if not reasons:
        # Prefer autonomous capacity, then fallback-approved carriers; among
        # equals, the tighter weight fit keeps big trucks for big loads.
        # Driverless capacity (level 5 with its corridor flag, on a corridor lane) comes first of all.
        score = (2.0 if carrier.is_autonomous else 1.0) + (0.5 if carrier.is_fallback else 0.0)
        score += L5_CORRIDOR_BONUS if level > SUPERVISED_AUTONOMY_LEVEL else 0.0
        score += shipment.weight_kg / max(carrier.max_weight_kg, 1) * 0.1
    return CarrierFit(carrier=carrier, reasons=reasons, score=score)


def carrier_ranking(*, shipment: Shipment) -> list[CarrierFit]:
    """Every carrier with its fit: eligible ones first, best first; then the excluded."""
    carriers = Carrier.objects.select_related("circuit").order_by("name")
    with flags.flag_snapshot():  # one read of the flags for the whole ranking
        fits = [carrier_fit(carrier=c, shipment=shipment) for c in carriers]
    eligible = sorted((f for f in fits if f.eligible), key=lambda f: (-f.score, f.carrier.name))
    excluded = [f for f in fits if not f.eligible]
    return eligible + excluded


def shipment_list(*, status: str | None = None, search: str | None = None) -> QuerySet[Shipment]:
    qs = Shipment.objects.all()
    if status:
        qs = qs.filter(status=status)
    if search:
        qs = qs.filter(
            Q(reference__icontains=search)
            | Q(origin_address__icontains=search)
            | Q(destination_address__icontains=search)
        )
    return qs


def mission_list(*, status: str | None = None, carrier_id: int | None = None) -> QuerySet[Mission]:
    qs = Mission.objects.select_related("shipment", "carrier", "vehicle")
    if status == "active":
        qs = qs.filter(status__in=MISSION_ACTIVE)
    elif status:
        qs = qs.filter(status=status)
    if carrier_id:
        qs = qs.filter(carrier_id=carrier_id)
    return qs


def shipment_open_tenders(*, shipment: Shipment) -> QuerySet[Tender]:
    return shipment.tenders.filter(status__in=TENDER_OPEN)


def shipment_timeline(*, shipment: Shipment) -> QuerySet[AuditEvent]:
    """Everything that happened to a shipment, its tenders and missions, oldest first."""
    return AuditEvent.objects.filter(Q(shipment=shipment) | Q(correlation_id=shipment.correlation_id)).order_by("id")


def mission_timeline(*, mission: Mission) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(Q(mission=mission) | Q(shipment_id=mission.shipment_id)).order_by("id")


def fallback_price(*, carrier: Carrier, shipment: Shipment) -> Decimal | None:
    if carrier.fallback_rate_usd_per_km is None:
        return None
    return (carrier.fallback_rate_usd_per_km * Decimal(str(round(shipment.distance_km, 1)))).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class CarrierFlagState:
    """One flag of one carrier as the console shows it: on or off, and the last change if there was one."""

    spec: flags.CarrierFlagSpec
    enabled: bool
    changed_by: str = ""
    changed_at: datetime | None = None
    reason: str = ""


def carrier_flag_board(*, carrier_ids: list[int] | None = None) -> list[tuple[Carrier, list[CarrierFlagState]]]:
    """Each autonomous carrier with every flag of the catalogue (evaluated as tendering evaluates them)."""
    carriers = Carrier.objects.filter(kind=CarrierKind.AUTONOMOUS).order_by("name")
    if carrier_ids is not None:
        carriers = carriers.filter(pk__in=carrier_ids)
    rows = {(r.carrier_id, r.key): r for r in CarrierFlag.objects.filter(carrier__in=carriers)}
    board: list[tuple[Carrier, list[CarrierFlagState]]] = []
    with flags.flag_snapshot():
        for carrier in carriers:
            states = []
            for key, spec in flags.CARRIER_FLAGS.items():
                row = rows.get((carrier.pk, key))
                states.append(
                    CarrierFlagState(
                        spec=spec,
                        enabled=flags.flag_enabled(carrier, key),
                        changed_by=row.changed_by if row else "",
                        changed_at=row.changed_at if row and row.changed_by else None,
                        reason=row.reason if row else "",
                    )
                )
            board.append((carrier, states))
    return board
