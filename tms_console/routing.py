"""Websocket routes of every app.

Console sockets use the session (and the Origin check against cookie
theft); partner sockets carry an OAuth2 bearer token and no Origin.
"""

from missions.routing import websocket_urlpatterns as missions_ws
from missions.telemetry.routing import partner_websocket_urlpatterns as partner_ws
from missions.telemetry.routing import websocket_urlpatterns as telemetry_ws

websocket_urlpatterns = [*missions_ws, *telemetry_ws]
partner_websocket_urlpatterns = [*partner_ws]
