"""ASGI entry point: HTTP through Django, websockets through Channels.

Under daphne, request bodies are limited while they arrive, and a streamed path's answer is paced
by the socket (``tms_console.daphne_bodies``).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from runbooks.watchdog import safety_ticker_start  # noqa: E402
from tms_console import daphne_bodies  # noqa: E402
from tms_console.routing import partner_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402

daphne_bodies.install()

console_ws = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
application = ProtocolTypeRouter(
    {
        "http": daphne_bodies.paced(django_asgi_app),
        "websocket": URLRouter([*partner_websocket_urlpatterns, re_path(r"", console_ws)]),
    }
)
# Gap detection and runbook steps keep running from here if beat or the broker goes down.
safety_ticker_start()
