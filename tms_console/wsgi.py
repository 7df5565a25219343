"""WSGI entry point: the console and API under a WSGI server (gunicorn), for the partner HTTP ingest path.

Signed telemetry webhooks are served by ``missions.partner.api.webhook_wsgi.WebhookFastPath``
in front of Django's handler; everything else is plain Django. ``BodyLimitWSGI`` in front of
both reads chunked bodies and refuses bodies over the limit while reading. Websockets and
the live map need the ASGI entry point (``tms_console.asgi``, daphne).
"""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings")
django.setup(set_prefix=False)  # what django.core.wsgi.get_wsgi_application does first

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402

from tms_console import tracing  # noqa: E402

# The partner ingest path is the telemetry hot path: unless the operator says otherwise, a tenth of the
# requests that arrive without a trace start one (a caller's sampled trace is always followed), and its
# statements and Redis commands get no spans of their own (decision 0021, README "Tracing").
tracing.service_defaults(
    OTEL_TRACES_SAMPLER="parentbased_traceidratio",
    OTEL_TRACES_SAMPLER_ARG="0.1",
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="psycopg,redis",
)
# Before the handler loads the middleware: the Django instrumentation adds its own.
tracing.configure("partner-ingest")
django_application = WSGIHandler()

from missions.partner.api.webhook_wsgi import WebhookFastPath  # noqa: E402  (needs Django set up)
from tms_console.request_body import BodyLimitWSGI  # noqa: E402

# Outermost: the fast path and Django both get chunked bodies with their length, and never
# a body over the limit.
application = BodyLimitWSGI(WebhookFastPath(django_application))

# Everything loaded so far (Django, the apps, their modules) lives as long as the process: moved out of the
# cycle collector's reach, so a full collection walks only what requests and batches left behind. Without it
# one took 100-350 ms in a process serving tenders, holding every thread of the worker meanwhile.
gc.freeze()
