"""Websocket routes of the telemetry pipeline: partner ingest stream and the live map."""

from django.urls import URLPattern, URLResolver, re_path

from missions.telemetry.consumers import LiveMapConsumer, TelemetryIngestConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^ws/ingest/$", TelemetryIngestConsumer.as_asgi()),
    re_path(r"^ws/map/$", LiveMapConsumer.as_asgi()),
]
