"""Partner API v1 routes (mounted at /api/v1/)."""

from django.urls import URLPattern, URLResolver, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from missions.partner.api import (  # noqa: F401  (schema registers the auth extension)
    backfill,
    edi,
    route_plans,
    schema,
    views,
    webhooks,
)

urlpatterns: list[URLPattern | URLResolver] = [
    path("capabilities", views.CapabilitiesView.as_view(), name="api-capabilities"),
    path("tenders", views.TenderListView.as_view(), name="api-tenders"),
    path("tenders/<int:pk>", views.TenderDetailView.as_view(), name="api-tender"),
    path("tenders/<int:pk>/offers", views.TenderOfferView.as_view(), name="api-tender-offers"),
    path("missions", views.MissionListView.as_view(), name="api-missions"),
    path("missions/<int:pk>", views.MissionDetailView.as_view(), name="api-mission"),
    path("missions/<int:pk>/status", views.MissionStatusView.as_view(), name="api-mission-status"),
    path("missions/<int:pk>/vehicle", views.MissionVehicleView.as_view(), name="api-mission-vehicle"),
    path("missions/<int:pk>/autonomy-mode", views.MissionAutonomyView.as_view(), name="api-mission-autonomy"),
    path("missions/<int:pk>/exceptions", views.MissionExceptionView.as_view(), name="api-mission-exceptions"),
    path("missions/<int:pk>/route-plans", route_plans.RoutePlanView.as_view(), name="api-mission-route-plans"),
    path("events", views.EventReplayView.as_view(), name="api-events"),
    path("telemetry", views.TelemetryView.as_view(), name="api-telemetry"),
    path("telemetry/batch", views.TelemetryBatchView.as_view(), name="api-telemetry-batch"),
    path("telemetry/backfill", backfill.TelemetryBackfillView.as_view(), name="api-telemetry-backfill"),
    path("edi/interchanges", edi.EdiInterchangeView.as_view(), name="api-edi-interchanges"),
    path("webhooks/<slug:carrier_slug>", webhooks.CarrierWebhookView.as_view(), name="api-webhook"),
    path(
        "schema/",
        SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny], throttle_classes=[]),
        name="api-schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(
            url_name="api-schema", authentication_classes=[], permission_classes=[AllowAny], throttle_classes=[]
        ),
        name="api-docs",
    ),
]
