"""Top-level URLs: console pages, the two-factor login, the admin, the partner API and its OAuth endpoints."""

from django.contrib.auth.views import LogoutView
from django.urls import include, path, re_path
from two_factor.urls import urlpatterns as two_factor_urls

from tms_console import admin_site, health, views
from tms_console.login import GuardedLoginView
from tms_console.metrics import metrics_view

# two_factor's own pages, with its password step behind the guard on guessing (same URL names).
_two_factor_patterns, _two_factor_namespace = two_factor_urls
two_factor_guarded = [
    path("account/login/", GuardedLoginView.as_view(), name="login"),
    *(p for p in _two_factor_patterns if getattr(p, "name", None) != "login"),
]

# A W3C trace id is 32 lower-case hex digits; anything else is not a trace page (404).
trace_patterns = [re_path(r"^(?P<trace_id>[0-9a-f]{32})/$", views.trace_detail, name="detail")]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("traces/", include((trace_patterns, "traces"))),
    path("", include((two_factor_guarded, _two_factor_namespace))),
    path("account/logout/", LogoutView.as_view(), name="logout"),
    path("admin/", admin_site.site.urls),
    path("", include("missions.tendering.urls")),
    path("", include("missions.telemetry.urls")),
    path("", include("missions.bus.urls")),
    path("", include("missions.evidence.console_urls")),
    path("edi/", include("missions.edi.urls")),
    path("incidents/", include("runbooks.urls")),
    path("sla/", include("sla.urls")),
    path("sla/dashboard/", include("sla.dashboard_urls")),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/evidence/", include("missions.partner.api.evidence_urls")),
    path("api/v1/certification/", include("missions.onboarding.api_urls")),
    path("api/v1/", include("sla.api_urls")),
    path("api/v1/", include("missions.partner.api.urls")),
    path("", include("missions.partner.api.oauth_urls")),
    path("", include("missions.onboarding.urls")),
    path("partners/", include("missions.partner.urls")),
]

# An error in a middleware (the session or user lookup) when the database is down is a 503 too.
handler500 = "tms_console.health.server_error"
