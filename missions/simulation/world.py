"""The world a run starts from: carriers with contracts, their trucks, a fallback carrier, the people.

Everything is created through the product's services where it has them (contracts through
``sla.services.contract_create``, so they are validated as the console validates them). Slugs
carry a run prefix so a run can be repeated on the same database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.contrib.auth.models import Group, User

from missions.choices import CarrierKind
from missions.events import Actor
from missions.models import Carrier, Vehicle
from missions.simulation.profile import Profile
from sla.services import contract_create
from tms_console.roles import ON_CALL, SLA_MANAGER, roles_sync

SETUP = Actor.system("program-simulator")

# A lane inside Texas (both carriers operate there): Dallas -> Houston, real city centres.
ORIGIN = ("Dallas, TX", "TX", 32.7767, -96.7970)
DESTINATION = ("Houston, TX", "TX", 29.7604, -95.3698)


@dataclass(frozen=True)
class Truck:
    external_id: str
    carrier_slug: str


@dataclass
class World:
    prefix: str
    carriers: dict[str, Carrier]
    fallback: Carrier
    trucks: list[Truck]
    # The fallback carrier's tractors (human-driven, with an ELD): it names one for each load it takes.
    fallback_trucks: list[str]
    oncall: User
    sla_manager: User


def _user(username: str, role: str) -> User:
    user, _ = User.objects.get_or_create(username=username, defaults={"is_active": True})
    user.groups.add(Group.objects.get(name=role))
    return user


def world_build(*, prefix: str, profile: Profile, trucks: int, start: datetime) -> World:
    """Create the run's carriers, contracts and trucks (``trucks`` shared round-robin among the carriers)."""
    roles_sync()
    # In force from before the run's first month, so a month closed during the run has its contract.
    effective_from = date(start.year - 1, 1, 1)
    contract = {
        "effective_from": effective_from,
        "monthly_fee_usd": profile.monthly_fee_usd,
        "on_time_target_pct": profile.on_time_target_pct,
        "mission_success_target_pct": profile.mission_success_target_pct,
        "telemetry_integrity_target_pct": profile.telemetry_integrity_target_pct,
        "failover_time_target_seconds": profile.failover_target_seconds,
        "mttr_target_seconds": profile.mttr_target_seconds,
        "api_latency_p99_target_ms": profile.api_latency_target_ms,
        "api_error_rate_target_pct": profile.api_error_rate_target_pct,
        "telemetry_gap_seconds": profile.gap_seconds,
        "recovery_timeout_seconds": profile.recovery_timeout_seconds,
        "credit_schedule": profile.credit_schedule_json(),
    }
    carriers: dict[str, Carrier] = {}
    for n in range(profile.carriers):
        slug = f"{prefix}-av{n + 1}"
        carrier = Carrier.objects.create(
            name=f"Sim Autonomous {n + 1} ({prefix})",
            slug=slug,
            kind=CarrierKind.AUTONOMOUS,
            max_autonomy_level=4,
            operating_regions=["TX"],
        )
        contract_create(actor=SETUP, carrier_id=carrier.pk, **contract)
        carriers[slug] = carrier
    fallback = Carrier.objects.create(
        name=f"Sim Fallback Freight ({prefix})",
        slug=f"{prefix}-fallback",
        kind=CarrierKind.HUMAN_DRIVEN,
        max_autonomy_level=0,
        is_fallback=True,
        fallback_rate_usd_per_km=Decimal("2.35"),
        operating_regions=["TX"],
    )
    contract_create(actor=SETUP, carrier_id=fallback.pk, **{**contract, "monthly_fee_usd": Decimal("0")})
    slugs = list(carriers)
    fleet: list[Truck] = []
    for n in range(trucks):
        slug = slugs[n % len(slugs)]
        external_id = f"{prefix.upper()}-{n + 1:03d}"
        Vehicle.objects.create(carrier=carriers[slug], external_id=external_id)
        fleet.append(Truck(external_id=external_id, carrier_slug=slug))
    fallback_trucks = [f"{prefix.upper()}-FB-{n + 1:02d}" for n in range(max(4, trucks // 10))]
    for external_id in fallback_trucks:
        Vehicle.objects.create(carrier=fallback, external_id=external_id)
    return World(
        prefix=prefix,
        carriers=carriers,
        fallback=fallback,
        trucks=fleet,
        fallback_trucks=fallback_trucks,
        oncall=_user(f"{prefix}-oncall", ON_CALL),
        sla_manager=_user(f"{prefix}-sla", SLA_MANAGER),
    )
