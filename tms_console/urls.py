"""Top-level URLs: console pages, the two-factor login, the admin, the partner API."""

from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path
from two_factor.urls import urlpatterns as two_factor_urls

from tms_console import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("", include(two_factor_urls)),
    path("account/logout/", LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("missions.urls")),
    path("incidents/", include("runbooks.urls")),
    path("sla/", include("sla.urls")),
    path("api/v1/", include("missions.api.urls")),
]
