"""Incident pages (mounted under /incidents/)."""

from django.urls import URLPattern, URLResolver, path

from runbooks import views

app_name = "runbooks"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.incident_list, name="incident_list"),
    path("<int:pk>/", views.incident_detail, name="incident_detail"),
    path("<int:pk>/acknowledge/", views.incident_acknowledge, name="incident_acknowledge"),
    path("<int:pk>/mitigate/", views.incident_mitigate, name="incident_mitigate"),
    path("<int:pk>/resolve/", views.incident_resolve, name="incident_resolve"),
    path("<int:pk>/close/", views.incident_close, name="incident_close"),
    path("<int:pk>/notes/", views.incident_note, name="incident_note"),
    path("<int:pk>/ota-resume/", views.incident_ota_resume, name="incident_ota_resume"),
    path("<int:pk>/page/", views.incident_page_again, name="incident_page"),
    path("<int:pk>/steps/<int:step_id>/confirm/", views.step_confirm, name="step_confirm"),
    path("<int:pk>/steps/<int:step_id>/run/", views.step_retry, name="step_run"),
    path("<int:pk>/steps/<int:step_id>/skip/", views.step_skip, name="step_skip"),
]
