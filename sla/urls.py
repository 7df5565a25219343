"""SLA pages (mounted under /sla/)."""

from django.urls import URLPattern, URLResolver, path

from sla import views

app_name = "sla"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.contract_list, name="contract_list"),
]
