"""Console routes for partner credentials (mounted at /partners/)."""

from django.urls import URLPattern, URLResolver, path

from missions.ota import views as ota_views
from missions.partner import identity_views
from missions.partner import views as partner_views
from missions.routeplans import views as signing_key_views

app_name = "partners"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", partner_views.partner_list, name="list"),
    path("clients/new/", partner_views.partner_client_create, name="client_create"),
    path("clients/<int:pk>/rotate/", partner_views.partner_client_rotate, name="client_rotate"),
    path("clients/<int:pk>/certificate/", partner_views.partner_client_certificate, name="client_certificate"),
    path("carriers/<int:carrier_pk>/webhook-secret/", partner_views.webhook_secret_rotate, name="webhook_rotate"),
    path("ota/", ota_views.ota_repository_list, name="ota"),
    path("ota/configure/", ota_views.ota_repository_configure, name="ota_configure"),
    path("ota/<int:pk>/refresh/", ota_views.ota_repository_refresh, name="ota_refresh"),
    path("signing-keys/", signing_key_views.signing_key_list, name="signing_keys"),
    path("signing-keys/new/", signing_key_views.signing_key_create, name="signing_key_create"),
    path("signing-keys/<int:pk>/retire/", signing_key_views.signing_key_retire, name="signing_key_retire"),
    path("carriers/<int:carrier_pk>/identity/", identity_views.carrier_identity, name="carrier_identity"),
    path(
        "carriers/<int:carrier_pk>/identity/trust-domain/",
        identity_views.carrier_trust_domain_set,
        name="carrier_trust_domain",
    ),
    path("carriers/<int:carrier_pk>/identity/bundle/", identity_views.carrier_bundle_add, name="carrier_bundle_add"),
    path(
        "carriers/<int:carrier_pk>/identity/bundle/<int:pk>/retire/",
        identity_views.carrier_bundle_retire,
        name="carrier_bundle_retire",
    ),
]
