"""Console URLs of the telemetry pipeline."""

from django.urls import URLPattern, URLResolver, path

from missions.telemetry import dead_letter_views, map_views

app_name = "telemetry"

urlpatterns: list[URLPattern | URLResolver] = [
    path("map/", map_views.live_map, name="live_map"),
    path("missions/<int:pk>/telemetry.json", map_views.mission_telemetry, name="mission_telemetry"),
    path("telemetry/dead-letters/", dead_letter_views.dead_letter_list, name="dead_letters"),
    path("telemetry/dead-letters/<int:pk>/", dead_letter_views.dead_letter_detail, name="dead_letter_detail"),
    path(
        "telemetry/dead-letters/<int:pk>/discard/",
        dead_letter_views.dead_letter_discard_view,
        name="dead_letter_discard",
    ),
]
