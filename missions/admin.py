"""Admin for carriers, vehicles, shipments, tenders and missions; events are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from missions.models import (
    AuditEvent,
    Carrier,
    CarrierCircuit,
    EventDelivery,
    Mission,
    MissionException,
    Offer,
    Shipment,
    Tender,
    Vehicle,
)
from missions.models.edi import EdiPartner


@admin.register(Carrier)
class CarrierAdmin(admin.ModelAdmin[Carrier]):
    list_display = ("name", "kind", "status", "max_autonomy_level", "is_fallback", "fleet_paused")
    list_filter = ("kind", "status", "is_fallback")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    exclude = ("api_client_secret",)


@admin.register(Vehicle)
class VehicleAdmin(admin.ModelAdmin[Vehicle]):
    list_display = ("external_id", "carrier", "autonomy_mode")
    list_filter = ("carrier",)
    search_fields = ("external_id",)


class ReadOnlyAdmin(admin.ModelAdmin[Any]):
    """Domain state changes only through the services (and leave events); the admin shows it."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Shipment)
class ShipmentAdmin(ReadOnlyAdmin):
    list_display = ("reference", "status", "origin_address", "destination_address", "weight_kg", "hazmat")
    list_filter = ("status", "hazmat")
    search_fields = ("reference",)


@admin.register(Tender)
class TenderAdmin(ReadOnlyAdmin):
    list_display = ("id", "shipment", "carrier", "status", "expires_at")
    list_filter = ("status", "carrier")


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    list_display = ("id", "tender", "kind", "price_usd", "received_at")


@admin.register(Mission)
class MissionAdmin(ReadOnlyAdmin):
    list_display = ("id", "shipment", "carrier", "vehicle", "status", "autonomy_mode", "last_seen_at")
    list_filter = ("status", "carrier")


@admin.register(MissionException)
class MissionExceptionAdmin(ReadOnlyAdmin):
    list_display = ("id", "mission", "kind", "status", "occurred_at")
    list_filter = ("kind", "status")


@admin.register(CarrierCircuit)
class CarrierCircuitAdmin(ReadOnlyAdmin):
    list_display = ("carrier", "state", "consecutive_failures", "opened_at")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "occurred_at", "actor_label", "action", "subject_type", "subject_id")
    list_filter = ("action", "actor_kind")
    search_fields = ("correlation_id", "actor_label")


@admin.register(EventDelivery)
class EventDeliveryAdmin(admin.ModelAdmin[EventDelivery]):
    """Subscriber deliveries owed or given up on: what failed, how often, and why."""

    list_display = ("event", "subscriber", "status", "attempts", "next_attempt_at", "updated_at")
    list_filter = ("status", "subscriber")
    readonly_fields = ("event", "subscriber", "context", "attempts", "last_error", "created_at", "updated_at")


@admin.register(EdiPartner)
class EdiPartnerAdmin(admin.ModelAdmin[EdiPartner]):
    list_display = ("carrier", "interchange_qualifier", "interchange_id", "scac", "version", "transport", "is_active")
