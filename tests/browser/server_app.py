"""The console's ASGI application as the browser tests serve it: static files come from the finders.

The test server runs with DEBUG off and no ``collectstatic`` step, so
WhiteNoise has nothing to serve; Django's static-files handler serves the
files straight from ``static/`` instead (HTTP only; websockets pass through).
"""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from tms_console.asgi import application as console_application

application = ASGIStaticFilesHandler(console_application)
