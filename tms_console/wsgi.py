"""WSGI entry point: the console and API under a WSGI server (gunicorn), for the partner HTTP ingest path.

Signed telemetry webhooks are served by ``missions.partner.api.webhook_wsgi.WebhookFastPath``
in front of Django's handler; everything else is plain Django. ``BodyLimitWSGI`` in front of
both reads chunked bodies and refuses bodies over the limit while reading. Websockets and
the live map need the ASGI entry point (``tms_console.asgi``, daphne).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings")
django_application = get_wsgi_application()

from missions.partner.api.webhook_wsgi import WebhookFastPath  # noqa: E402  (needs Django set up)
from tms_console.request_body import BodyLimitWSGI  # noqa: E402

# Outermost: the fast path and Django both get chunked bodies with their length, and never
# a body over the limit.
application = BodyLimitWSGI(WebhookFastPath(django_application))
