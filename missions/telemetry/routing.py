"""Websocket routes of the telemetry pipeline: partner ingest stream and the live map."""

from django.urls import URLPattern, URLResolver, re_path

from missions.telemetry.consumers import LiveMapConsumer, TelemetryIngestConsumer

# Machine clients authenticate with a bearer token; browsers' Origin checks do not apply.
partner_websocket_urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^ws/ingest/$", TelemetryIngestConsumer.as_asgi()),
]
websocket_urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^ws/map/$", LiveMapConsumer.as_asgi()),
]
