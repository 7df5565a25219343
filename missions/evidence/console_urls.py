"""Console evidence pages, mounted at the site root (next to the mission pages)."""

from django.urls import URLPattern, path

from missions.evidence import views

app_name = "evidence"

urlpatterns: list[URLPattern] = [
    path("missions/<int:pk>/evidence/", views.mission_evidence, name="mission_evidence"),
    path("missions/<int:pk>/evidence/bundle/", views.mission_evidence_bundle, name="mission_evidence_bundle"),
    path("evidence/breaches/<int:pk>/bundle/", views.breach_evidence_bundle, name="breach_evidence_bundle"),
]
