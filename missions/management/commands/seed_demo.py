"""Seed an idempotent demo: carriers, vehicles, contracts, shipments in several states, a user per role.

Running it again changes nothing and creates no duplicates: every object is
found by a natural key first (carrier slug, vehicle external id, contract
version, a shipment's lane for its demo creator, username). Shipments,
tenders, offers and missions are created through ``missions.services`` so
the timelines and the audit trail look exactly as they would in real use.

The tenders it marks sent must also be in the carrier simulator's books, or
the console's status polls would find them unknown (docs/decisions/0018): the
seed hands them to a running simulator (``POST /carriers/<slug>/_tenders``),
and a simulator that starts later restores them itself (``carrier_books``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
from django.contrib.auth.models import Group, User
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from missions.choices import AutonomyMode, CarrierKind, MissionStatus, OfferKind, TenderStatus
from missions.events import Actor, event_record
from missions.management.demo_onboarding import DEMO_ONBOARDING, onboarding_seed
from missions.models import Carrier, Mission, Shipment, TelemetrySample, Tender, Vehicle
from missions.models.core import haversine_km
from missions.models.edi import EdiPartner
from missions.services import mission_transition, offer_record, shipment_create, tender_create, tender_mark_sent
from missions.tendering.carrier_client import tender_submit_body
from sla.models import Contract
from tms_console import tracing
from tms_console.demo import (
    DEFAULT_CARRIER_SIM_URL,
    carrier_sim_client_secret,
    demo_password,
    demo_totp_key,
    totp_key_base32,
)
from tms_console.roles import ADMIN, DISPATCHER, ON_CALL, READ_ONLY, SLA_MANAGER, roles_sync

SEED = Actor.system("seed")


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    superuser: bool = False


DEMO_USERS = (
    DemoUser("demo-dispatcher", DISPATCHER),
    DemoUser("demo-oncall", ON_CALL),
    DemoUser("demo-admin", ADMIN, superuser=True),
    DemoUser("demo-viewer", READ_ONLY),
    DemoUser("demo-sla", SLA_MANAGER),
)


@dataclass(frozen=True)
class DemoCarrier:
    name: str
    slug: str
    kind: str
    max_autonomy_level: int
    regions: tuple[str, ...]
    vehicles: tuple[str, ...]
    hazmat_allowed: bool = False
    max_weight_kg: int = 36000
    # Human-driven capacity pre-approved for failover, at this rate.
    fallback_rate_usd_per_km: Decimal | None = None
    # Carriers with an API get the simulator's URL; the human fallback is a pull carrier.
    has_api: bool = True
    # EDI X12 identity (ISA06, SCAC): the carrier is tendered by 204 and answers by 990 / 214 (docs/edi.md).
    edi_id: str = ""
    scac: str = ""
    contract: dict[str, Any] = field(default_factory=dict)


LONESTAR = "lonestar-autonomous"
SUNBELT = "sunbelt-driverless"
RED_RIVER = "red-river-freight"
TRANSCON = "transcon-autonomous"

DEMO_CARRIERS = (
    DemoCarrier(
        name="Lonestar Autonomous Freight",
        slug=LONESTAR,
        kind=CarrierKind.AUTONOMOUS,
        max_autonomy_level=4,
        regions=("TX", "LA", "MS", "AL", "GA"),
        vehicles=("LSA-101", "LSA-102", "LSA-103"),
        contract={"monthly_fee_usd": Decimal("42000"), "on_time_target_pct": Decimal("95")},
    ),
    DemoCarrier(
        name="Sunbelt Driverless",
        slug=SUNBELT,
        kind=CarrierKind.AUTONOMOUS,
        max_autonomy_level=4,
        regions=("TX", "NM", "AZ"),
        vehicles=("SBD-201", "SBD-202", "SBD-203"),
        contract={"monthly_fee_usd": Decimal("36500"), "on_time_target_pct": Decimal("96")},
    ),
    DemoCarrier(
        # The playbook's example lane, Chicago -> Los Angeles, along I-55 / I-44 / I-40 / I-15.
        name="Transcon Autonomous Lines",
        slug=TRANSCON,
        kind=CarrierKind.AUTONOMOUS,
        max_autonomy_level=4,
        regions=("IL", "MO", "OK", "TX", "NM", "AZ", "NV", "CA"),
        vehicles=("TAL-401", "TAL-402"),
        contract={"monthly_fee_usd": Decimal("48000"), "on_time_target_pct": Decimal("95")},
    ),
    DemoCarrier(
        name="Red River Freight Lines",
        slug=RED_RIVER,
        kind=CarrierKind.HUMAN_DRIVEN,
        max_autonomy_level=0,
        regions=(),
        vehicles=("RRF-301", "RRF-302"),
        hazmat_allowed=True,
        max_weight_kg=36287,
        fallback_rate_usd_per_km=Decimal("2.35"),
        has_api=False,
        edi_id="REDRIVERFRT",
        scac="RRFL",
        contract={
            "monthly_fee_usd": Decimal("0"),
            "on_time_target_pct": Decimal("92"),
            "failover_time_target_seconds": 1800,
        },
    ),
)


@dataclass(frozen=True)
class Hub:
    address: str
    region: str
    lat: float
    lon: float


# City-centre coordinates (WGS84) of real US freight hubs.
DALLAS = Hub("Dallas, TX", "TX", 32.7767, -96.7970)
HOUSTON = Hub("Houston, TX", "TX", 29.7604, -95.3698)
FORT_WORTH = Hub("Fort Worth, TX", "TX", 32.7555, -97.3308)
EL_PASO = Hub("El Paso, TX", "TX", 31.7619, -106.4850)
PHOENIX = Hub("Phoenix, AZ", "AZ", 33.4484, -112.0740)
ATLANTA = Hub("Atlanta, GA", "GA", 33.7490, -84.3880)
SAN_ANTONIO = Hub("San Antonio, TX", "TX", 29.4241, -98.4936)
LAREDO = Hub("Laredo, TX", "TX", 27.5306, -99.4803)

OPEN, TENDERING, ASSIGNED, IN_TRANSIT, DELIVERED = "open", "tendering", "assigned", "in_transit", "delivered"


@dataclass(frozen=True)
class DemoShipment:
    origin: Hub
    destination: Hub
    state: str
    route: str
    weight_kg: int
    target_rate_usd: Decimal
    carrier_slug: str = ""
    vehicle: str = ""
    hazmat: bool = False


DEMO_SHIPMENTS = (
    DemoShipment(DALLAS, HOUSTON, OPEN, "I-45 S", 18500, Decimal("1150")),
    DemoShipment(FORT_WORTH, EL_PASO, OPEN, "I-20 W / I-10 W", 21000, Decimal("2650"), hazmat=True),
    DemoShipment(HOUSTON, SAN_ANTONIO, TENDERING, "I-10 W", 16000, Decimal("980"), LONESTAR),
    DemoShipment(LAREDO, DALLAS, TENDERING, "I-35 N", 24000, Decimal("1900"), SUNBELT),
    DemoShipment(EL_PASO, PHOENIX, ASSIGNED, "I-10 W", 19500, Decimal("1780"), SUNBELT, "SBD-201"),
    DemoShipment(DALLAS, ATLANTA, IN_TRANSIT, "I-20 E", 22000, Decimal("3300"), LONESTAR, "LSA-101"),
    DemoShipment(SAN_ANTONIO, LAREDO, IN_TRANSIT, "I-35 S", 17500, Decimal("890"), LONESTAR, "LSA-102"),
    DemoShipment(HOUSTON, DALLAS, DELIVERED, "I-45 N", 20000, Decimal("1150"), SUNBELT, "SBD-202"),
    DemoShipment(PHOENIX, EL_PASO, DELIVERED, "I-10 E", 15000, Decimal("1700"), RED_RIVER, "RRF-301"),
)

# Rough highway speed used for demo windows and ETAs.
DEMO_SPEED_KPH = 88.0


@dataclass
class Report:
    created: dict[str, int] = field(default_factory=dict)
    # Tenders marked sent in this run: the carrier simulator must hold them too.
    sent_tender_ids: list[int] = field(default_factory=list)

    def add(self, what: str, n: int = 1) -> None:
        self.created[what] = self.created.get(what, 0) + n


class Command(BaseCommand):
    help = "Seed demo carriers, contracts, shipments and one user per role (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--quiet-logins", action="store_true", help="Do not print the demo logins.")

    def handle(self, *args: Any, **options: Any) -> None:
        tracing.configure("seed")
        try:
            password = demo_password(dict(os.environ))
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        sim_url = (os.environ.get("CARRIER_SIM_URL") or DEFAULT_CARRIER_SIM_URL).rstrip("/")
        report = Report()
        with transaction.atomic():
            roles_sync()
            users = {u.username: self._user(u, password, report) for u in DEMO_USERS}
            carriers = {c.slug: self._carrier(c, sim_url, report) for c in DEMO_CARRIERS}
            dispatcher = users["demo-dispatcher"]
            for spec in DEMO_SHIPMENTS:
                # Each demo load gets a trace of its own, as a dispatcher's tender would.
                with tracing.span_from("seed demo shipment"):
                    self._shipment(spec, carriers, dispatcher, report)
            for made in onboarding_seed(manager=users["demo-admin"], password=password, sim_url=sim_url):
                report.add(made.split(" ", 1)[1], int(made.split(" ", 1)[0]))

        summary = ", ".join(f"{n} {what}" for what, n in sorted(report.created.items())) or "nothing new"
        self.stdout.write(self.style.SUCCESS(f"Demo data ready ({summary})."))
        if report.sent_tender_ids:
            self._simulator_handover(report.sent_tender_ids)
        if not options["quiet_logins"]:
            self._print_logins(users, password)
        tracing.flush()

    # --- users ---------------------------------------------------------------

    def _user(self, spec: DemoUser, password: str, report: Report) -> User:
        user, created = User.objects.get_or_create(
            username=spec.username,
            defaults={"email": f"{spec.username}@example.com", "first_name": spec.role.replace("-", " ").title()},
        )
        if created:
            report.add("users")
        changed: list[str] = []
        if not user.check_password(password):
            user.set_password(password)
            changed.append("password")
        for attr, value in (("is_staff", spec.superuser), ("is_superuser", spec.superuser), ("is_active", True)):
            if getattr(user, attr) != value:
                setattr(user, attr, value)
                changed.append(attr)
        if changed:
            user.save()
        wanted = {spec.role}
        if set(user.groups.values_list("name", flat=True)) != wanted:
            user.groups.set(Group.objects.filter(name__in=wanted))

        key = demo_totp_key(spec.username)
        # two_factor's login asks for a code only from the device named "default".
        device, dev_created = TOTPDevice.objects.get_or_create(
            user=user, name="default", defaults={"key": key, "confirmed": True}
        )
        if dev_created:
            report.add("TOTP devices")
        elif device.key != key or not device.confirmed:
            device.key, device.confirmed = key, True
            device.save(update_fields=["key", "confirmed"])
        return user

    def _print_logins(self, users: dict[str, User], password: str) -> None:
        self.stdout.write("")
        self.stdout.write("Demo logins (password + one-time code from an authenticator app or the command shown):")
        for spec in DEMO_USERS:
            device = TOTPDevice.objects.get(user=users[spec.username], name="default")
            self.stdout.write(f"  {spec.username}  ({spec.role}{', superuser' if spec.superuser else ''})")
            self.stdout.write(f"    password:     {password}")
            self.stdout.write(f"    TOTP secret:  {totp_key_base32(device.key)}")
            self.stdout.write(f"    otpauth URI:  {device.config_url}")
            self.stdout.write(f"    current code: make otp OTP_USER={spec.username}")
        lead = User.objects.filter(username=DEMO_ONBOARDING.lead).first()
        device = TOTPDevice.objects.filter(user=lead, name="default").first() if lead else None
        if device is not None:
            self.stdout.write(f"  {DEMO_ONBOARDING.lead}  (carrier portal of {DEMO_ONBOARDING.name}, onboarding)")
            self.stdout.write(f"    password:     {password}")
            self.stdout.write(f"    TOTP secret:  {totp_key_base32(device.key)}")
            self.stdout.write(f"    current code: make otp OTP_USER={DEMO_ONBOARDING.lead}")
        self.stdout.write("")

    # --- carriers, vehicles, contracts ------------------------------------------

    def _carrier(self, spec: DemoCarrier, sim_url: str, report: Report) -> Carrier:
        api = (
            {
                "api_base_url": f"{sim_url}/carriers/{spec.slug}",
                "api_token_url": f"{sim_url}/oauth/token",
                "api_client_id": spec.slug,
                "api_client_secret": carrier_sim_client_secret(spec.slug),
            }
            if spec.has_api
            else {"api_base_url": "", "api_token_url": "", "api_client_id": "", "api_client_secret": ""}
        )
        carrier = Carrier.objects.filter(slug=spec.slug).first()
        if carrier is None:
            carrier = Carrier(
                name=spec.name,
                slug=spec.slug,
                kind=spec.kind,
                max_autonomy_level=spec.max_autonomy_level,
                hazmat_allowed=spec.hazmat_allowed,
                max_weight_kg=spec.max_weight_kg,
                operating_regions=list(spec.regions),
                is_fallback=spec.fallback_rate_usd_per_km is not None,
                fallback_rate_usd_per_km=spec.fallback_rate_usd_per_km,
                **api,
            )
            carrier.full_clean()
            carrier.save()
            event_record(
                actor=SEED,
                action="carrier.created",
                subject_type="carrier",
                subject_id=carrier.pk,
                after={"name": carrier.name, "kind": carrier.kind, "is_fallback": carrier.is_fallback},
                carrier=carrier,
            )
            report.add("carriers")
        else:
            # Only the simulator endpoint follows the environment on a re-seed;
            # anything an operator edited since stays as it is.
            stale = {k: v for k, v in api.items() if getattr(carrier, k) != v}
            if stale:
                for k, v in stale.items():
                    setattr(carrier, k, v)
                carrier.save(update_fields=list(stale))
        if spec.edi_id and not EdiPartner.objects.filter(carrier=carrier).exists():
            partner = EdiPartner(
                carrier=carrier,
                interchange_qualifier="ZZ",
                interchange_id=spec.edi_id,
                scac=spec.scac,
                transactions=["204", "990", "214", "997"],
            )
            partner.full_clean()
            partner.save()
            report.add("EDI partners")
        for external_id in spec.vehicles:
            mode = AutonomyMode.AUTONOMOUS if spec.kind == CarrierKind.AUTONOMOUS else AutonomyMode.MANUAL
            _, created = Vehicle.objects.get_or_create(
                carrier=carrier, external_id=external_id, defaults={"autonomy_mode": mode}
            )
            if created:
                report.add("vehicles")
        if not Contract.objects.filter(carrier=carrier).exists():
            contract = Contract(
                carrier=carrier,
                version=1,
                effective_from=date(timezone.now().year, 1, 1),
                credit_schedule=[{"below_pct": 95, "credit_pct": 5}, {"below_pct": 90, "credit_pct": 10}],
                **spec.contract,
            )
            contract.full_clean()
            contract.save()
            report.add("contracts")
        return carrier

    # --- shipments, tenders, missions -----------------------------------------

    def _shipment(self, spec: DemoShipment, carriers: dict[str, Carrier], dispatcher: User, report: Report) -> None:
        # The lane (plus its demo creator) is the natural key: references are generated.
        if Shipment.objects.filter(
            created_by=dispatcher, origin_address=spec.origin.address, destination_address=spec.destination.address
        ).exists():
            return
        actor = Actor.for_user(dispatcher)
        now = timezone.now()
        past = spec.state == DELIVERED
        distance_km = _distance_km(spec.origin, spec.destination)
        drive = timedelta(hours=distance_km / DEMO_SPEED_KPH)
        pickup_start = now - drive - timedelta(hours=6) if past else now + timedelta(hours=2)
        if spec.state == IN_TRANSIT:
            pickup_start = now - drive / 3 - timedelta(hours=1)
        shipment = shipment_create(
            actor=actor,
            origin_address=spec.origin.address,
            origin_region=spec.origin.region,
            origin_lat=spec.origin.lat,
            origin_lon=spec.origin.lon,
            destination_address=spec.destination.address,
            destination_region=spec.destination.region,
            destination_lat=spec.destination.lat,
            destination_lon=spec.destination.lon,
            pickup_window_start=pickup_start,
            pickup_window_end=pickup_start + timedelta(hours=2),
            delivery_window_start=pickup_start + drive,
            delivery_window_end=pickup_start + drive + timedelta(hours=4),
            weight_kg=spec.weight_kg,
            hazmat=spec.hazmat,
            max_autonomy_level=4,
            preferred_route=spec.route,
            target_rate_usd=spec.target_rate_usd,
        )
        report.add("shipments")
        if spec.state == OPEN:
            return
        carrier = carriers[spec.carrier_slug]
        tender = tender_create(
            actor=actor, shipment_id=shipment.pk, carrier_id=carrier.pk, offered_price_usd=spec.target_rate_usd
        )
        tender_mark_sent(tender_id=tender.pk, actor=SEED, external_ref=f"{carrier.slug[:3].upper()}-T{tender.pk}")
        if carrier.api_base_url:
            report.sent_tender_ids.append(tender.pk)
        if spec.state == TENDERING:
            return
        offer_record(
            tender_id=tender.pk,
            actor=Actor.for_carrier(carrier),
            kind=OfferKind.ACCEPT,
            price_usd=spec.target_rate_usd,
            vehicle_external_id=spec.vehicle,
            route_id=spec.route,
            eta=shipment.delivery_window_start + timedelta(hours=1),
            source="seed",
        )
        mission = Mission.objects.get(tender=tender)
        if spec.state == ASSIGNED:
            return
        carrier_actor = Actor.for_carrier(carrier)
        mission_transition(mission_id=mission.pk, to_status=MissionStatus.EN_ROUTE, actor=carrier_actor)
        if spec.state == IN_TRANSIT:
            self._position_report(mission, spec)
            return
        mission_transition(mission_id=mission.pk, to_status=MissionStatus.ARRIVING, actor=carrier_actor)
        mission_transition(mission_id=mission.pk, to_status=MissionStatus.COMPLETED, actor=carrier_actor)

    def _position_report(self, mission: Mission, spec: DemoShipment) -> None:
        """The truck's position as of the seed: a truck on the road has reported, until the fleet takes over.

        Without it, the minute between the seed and the fleet simulator's first
        report would count as missing telemetry and burn the carrier's budget.
        """
        now = timezone.now()
        TelemetrySample.objects.create(
            mission=mission,
            vehicle=mission.vehicle,
            recorded_at=now,
            lat=spec.origin.lat,
            lon=spec.origin.lon,
            speed_kph=0.0,
            autonomy_mode="autonomous",
            bucket_s=int(now.timestamp()),
        )
        Mission.objects.filter(pk=mission.pk).update(
            last_seen_at=now, last_lat=spec.origin.lat, last_lon=spec.origin.lon
        )

    # --- the carrier simulator's books -----------------------------------------

    def _simulator_handover(self, tender_ids: list[int]) -> None:
        """Give a running simulator the tenders just marked sent; one that is not running restores them later."""
        books = carrier_books([c.slug for c in DEMO_CARRIERS if c.has_api], tender_ids=tender_ids)
        urls = dict(Carrier.objects.filter(slug__in=list(books)).values_list("slug", "api_base_url"))
        handed = 0
        try:
            with httpx.Client(timeout=3.0) as client:
                for slug, entries in books.items():
                    if entries:
                        response = client.post(f"{urls[slug].rstrip('/')}/_tenders", json={"tenders": entries})
                        response.raise_for_status()
                        handed += len(entries)
        except httpx.HTTPError as exc:
            self.stdout.write(
                f"The carrier simulator did not take the sent demo tenders ({type(exc).__name__}); "
                "it restores them from the database when it starts."
            )
            return
        self.stdout.write(f"Handed {handed} sent demo tenders to the running carrier simulator.")


def carrier_books(slugs: Iterable[str], *, tender_ids: Iterable[int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """What each demo carrier's books must hold: the console's open tenders it has a ref for.

    Entries for ``CarrierSimulator.tenders_restore`` (or ``POST /carriers/<slug>/_tenders``):
    the ref, the Idempotency-Key and the very TenderSubmit body the console sends, so the
    simulator answers polls for them and takes a resend as the same tender. Only tenders at a
    carrier whose API is ``.../carriers/<slug>`` of a simulator are listed.
    """
    books: dict[str, list[dict[str, Any]]] = {slug: [] for slug in slugs}
    tenders = (
        Tender.objects.filter(carrier__slug__in=list(books), status__in=(TenderStatus.SENT, TenderStatus.COUNTERED))
        .exclude(external_ref="")
        .select_related("shipment", "carrier")
        .order_by("id")
    )
    if tender_ids is not None:
        tenders = tenders.filter(pk__in=list(tender_ids))
    for tender in tenders:
        carrier = tender.carrier
        if not carrier.api_base_url.rstrip("/").endswith(f"/carriers/{carrier.slug}"):
            continue  # an operator pointed it at a real carrier: not the simulator's business
        books[carrier.slug].append(
            {
                "ref": tender.external_ref,
                "idempotency_key": str(tender.idempotency_key),
                "request": tender_submit_body(tender),
            }
        )
    return books


def _distance_km(a: Hub, b: Hub) -> float:
    return haversine_km(a.lat, a.lon, b.lat, b.lon)
