"""The SLA engine's partner API route, mounted under /api/v1/."""

from django.urls import URLPattern, path

from sla.api import SlaSummaryView

urlpatterns: list[URLPattern] = [
    path("sla", SlaSummaryView.as_view(), name="api-sla"),
]
