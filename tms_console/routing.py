"""Websocket routes of every app."""

from missions.routing import websocket_urlpatterns as missions_ws
from missions.telemetry.routing import websocket_urlpatterns as telemetry_ws

websocket_urlpatterns = [*missions_ws, *telemetry_ws]
