"""Console URLs of EDI (mounted at /edi/)."""

from django.urls import URLPattern, URLResolver, path

from missions.edi import views

app_name = "edi"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.interchange_list, name="list"),
    path("<int:pk>/", views.interchange_detail, name="detail"),
    path("<int:pk>/resend/", views.interchange_resend, name="resend"),
]
