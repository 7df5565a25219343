"""WSGI entry point (the API ingest path can be served by a WSGI server too)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tms_console.settings")
application = get_wsgi_application()
