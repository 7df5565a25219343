"""``/api/v1/certification/``: run reports (``missions.onboarding.reports``) and the receivers of runs
(``missions.onboarding.receivers``)."""

from django.urls import path

from missions.onboarding import receivers, reports

app_name = "certification"

urlpatterns = [
    path("runs", reports.CertificationRunListView.as_view(), name="runs"),
    path("runs/<uuid:run_key>", reports.CertificationReportView.as_view(), name="report"),
    path("runs/<uuid:run_key>/certificate", reports.CertificationCertificateView.as_view(), name="certificate"),
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
