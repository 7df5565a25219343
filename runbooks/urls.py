"""Incident pages (mounted under /incidents/)."""

from django.urls import URLPattern, URLResolver, path

from runbooks import views

app_name = "runbooks"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.incident_list, name="incident_list"),
    path("<int:pk>/", views.incident_detail, name="incident_detail"),
    path("<int:pk>/acknowledge/", views.incident_acknowledge, name="incident_acknowledge"),
    path("<int:pk>/resolve/", views.incident_resolve, name="incident_resolve"),
]
