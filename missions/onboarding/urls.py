"""Onboarding routes (mounted at the site root): the console's invitations and the carrier portal."""

from django.urls import URLPattern, path

from missions.onboarding import views

app_name = "onboarding"

urlpatterns: list[URLPattern] = [
    path("carriers/onboarding/", views.onboarding_list, name="list"),
    path("carriers/marketplace/", views.marketplace, name="marketplace"),
    path("carriers/onboarding/invitations/<int:pk>/revoke/", views.invitation_revoke, name="revoke"),
    path("carriers/onboarding/<int:carrier_pk>/certify/", views.console_certification_start, name="console_certify"),
    path("carriers/onboarding/<int:carrier_pk>/go-live/", views.carrier_go_live, name="go_live"),
    path("carriers/onboarding/certification/<int:pk>/", views.console_certification, name="console_certification"),
    path(
        "carriers/onboarding/certification/<int:pk>/certificate.json",
        views.console_certification_certificate,
        name="console_certificate",
    ),
    path("portal/", views.portal, name="portal"),
    path("portal/certification/", views.certification_start, name="certify"),
    path("portal/certification/<int:pk>/", views.certification_detail, name="certification"),
    path("portal/certification/<int:pk>/certificate.json", views.certification_certificate, name="certificate"),
    path("portal/documents/", views.document_upload, name="document_upload"),
    path("portal/sandbox-credentials/", views.sandbox_credentials, name="sandbox_credentials"),
    path("portal/documents/<int:pk>/", views.document_download, name="document_download"),
    # Open: the link is the credential (tms_console.middleware lets /portal/invitations/ through).
    path("portal/invitations/<str:token>/", views.invitation_accept, name="accept"),
]
