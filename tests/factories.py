"""factory_boy factories for the domain models."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from missions.choices import CarrierKind
from missions.models import Carrier, Mission, Shipment, Tender, Vehicle
from runbooks.models import Incident
from sla.models import Contract


class CarrierFactory(factory.django.DjangoModelFactory[Carrier]):
    class Meta:
        model = Carrier

    name = factory.Sequence(lambda n: f"Carrier {n}")
    slug = factory.Sequence(lambda n: f"carrier-{n}")
    kind = CarrierKind.AUTONOMOUS
    max_autonomy_level = 4
    hazmat_allowed = False
    max_weight_kg = 36000
    operating_regions = factory.LazyFunction(lambda: ["TX", "AZ", "NM", "GA"])


class VehicleFactory(factory.django.DjangoModelFactory[Vehicle]):
    class Meta:
        model = Vehicle

    carrier = factory.SubFactory(CarrierFactory)
    external_id = factory.Sequence(lambda n: f"TRK-{n:04d}")


class ShipmentFactory(factory.django.DjangoModelFactory[Shipment]):
    class Meta:
        model = Shipment

    reference = factory.Sequence(lambda n: f"SHP-T-{n:05d}")
    origin_address = "Dallas, TX"
    origin_region = "TX"
    origin_lat = 32.7767
    origin_lon = -96.7970
    destination_address = "Houston, TX"
    destination_region = "TX"
    destination_lat = 29.7604
    destination_lon = -95.3698
    pickup_window_start = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))
    pickup_window_end = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=3))
    delivery_window_start = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=6))
    delivery_window_end = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=9))
    weight_kg = 18000
    target_rate_usd = Decimal("1450.00")


class TenderFactory(factory.django.DjangoModelFactory[Tender]):
    class Meta:
        model = Tender

    shipment = factory.SubFactory(ShipmentFactory)
    carrier = factory.SubFactory(CarrierFactory)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=15))
    offered_price_usd = Decimal("1400.00")
    correlation_id = factory.SelfAttribute("shipment.correlation_id")


class MissionFactory(factory.django.DjangoModelFactory[Mission]):
    class Meta:
        model = Mission

    shipment = factory.SubFactory(ShipmentFactory)
    carrier = factory.SubFactory(CarrierFactory)
    vehicle = factory.SubFactory(VehicleFactory, carrier=factory.SelfAttribute("..carrier"))
    route_id = "I-45-S"
    correlation_id = factory.SelfAttribute("shipment.correlation_id")


class ContractFactory(factory.django.DjangoModelFactory[Contract]):
    class Meta:
        model = Contract

    carrier = factory.SubFactory(CarrierFactory)
    effective_from = factory.LazyFunction(lambda: timezone.now().date() - timedelta(days=90))
    monthly_fee_usd = Decimal("50000")
    credit_schedule = factory.LazyFunction(
        lambda: [{"below_pct": 95, "credit_pct": 5}, {"below_pct": 90, "credit_pct": 10}]
    )


class IncidentFactory(factory.django.DjangoModelFactory[Incident]):
    class Meta:
        model = Incident

    title = "Lost comms"
    kind = "lost_comms"
    dedupe_key = factory.Sequence(lambda n: f"test:{n}")
    triggered_at = factory.LazyFunction(timezone.now)
