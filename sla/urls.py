"""SLA pages (mounted under /sla/): the landing page and the contracts tab; dashboards live in dashboard_urls."""

from django.urls import URLPattern, URLResolver, path

from sla import views

app_name = "sla"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.overview, name="overview"),
    path("contracts/", views.contract_list, name="contract_list"),
]
