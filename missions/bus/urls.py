"""Console URLs of the event bus."""

from django.urls import URLPattern, URLResolver, path

from missions.bus import views

app_name = "bus"

urlpatterns: list[URLPattern | URLResolver] = [
    path("operations/bus/", views.bus_overview, name="overview"),
]
