"""Console URLs of the telemetry pipeline."""

from django.urls import URLPattern, URLResolver, path

from missions.telemetry import map_views

app_name = "telemetry"

urlpatterns: list[URLPattern | URLResolver] = [
    path("map/", map_views.live_map, name="live_map"),
    path("missions/<int:pk>/telemetry.json", map_views.mission_telemetry, name="mission_telemetry"),
]
