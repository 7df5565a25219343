"""The receivers of certification runs, under ``/api/v1/certification/`` (``missions.onboarding.receivers``)."""

from django.urls import path

from missions.onboarding import receivers

app_name = "certification"

urlpatterns = [
    path(
        "runs/<uuid:run_key>/webhooks",
        receivers.CertificationWebhookView.as_view(),
        name="webhooks",
    ),
    path(
        "runs/<uuid:run_key>/telemetry",
        receivers.CertificationTelemetryView.as_view(),
        name="telemetry",
    ),
]
