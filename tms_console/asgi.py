"""ASGI entry point: HTTP through Django, websockets through Channels.

Under daphne, request bodies are limited while they arrive and a streamed path's answer is paced
by the socket (``tms_console.daphne_bodies``), and SIGTERM drains the requests in flight before
the process exits (``tms_console.daphne_drain``).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first

from tms_console import tracing  # noqa: E402
from tms_console.asgi_http import OneThreadASGIHandler  # noqa: E402

# Before the handler loads the middleware: the Django instrumentation adds its own. Websockets
# get no connection-long span: consumers make one short span per message (tms_console.tracing).
tracing.configure("web")

# HTTP: each request's middleware chain and view run in one worker thread (tms_console.asgi_http).
django_asgi_app = OneThreadASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from runbooks.watchdog import safety_ticker_start  # noqa: E402
from tms_console import daphne_bodies, daphne_drain  # noqa: E402
from tms_console.routing import partner_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402

daphne_bodies.install()
daphne_drain.install()

console_ws = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
application = ProtocolTypeRouter(
    {
        "http": daphne_bodies.paced(django_asgi_app),
        "websocket": URLRouter([*partner_websocket_urlpatterns, re_path(r"", console_ws)]),
    }
)
# Gap detection and runbook steps keep running from here if beat or the broker goes down.
_ticker = safety_ticker_start()
if _ticker is not None:
    # On SIGTERM the ticker finishes its round (within the drain time) instead of dying in it.
    daphne_drain.background_register(name="safety-ticker", stop=_ticker.stop.set, running=_ticker.thread.is_alive)
