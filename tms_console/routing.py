"""Websocket routes of every app."""

from missions.routing import websocket_urlpatterns as missions_ws

websocket_urlpatterns = [*missions_ws]
