"""Evidence API routes, mounted at /api/v1/evidence/."""

from django.urls import URLPattern, path

from missions.partner.api import evidence as api

urlpatterns: list[URLPattern] = [
    path("checkpoint", api.CheckpointView.as_view(), name="api-evidence-checkpoint"),
    path("proofs/inclusion", api.InclusionProofView.as_view(), name="api-evidence-inclusion"),
    path("proofs/consistency", api.ConsistencyProofView.as_view(), name="api-evidence-consistency"),
    path("missions/<int:pk>/bundle", api.MissionBundleView.as_view(), name="api-evidence-mission-bundle"),
]
