"""The console's ASGI application as the browser tests serve it: static files come from the finders.

The test server runs with DEBUG off and no ``collectstatic`` step, so
WhiteNoise has nothing to serve; Django's static-files handler serves the
files straight from ``static/`` instead (HTTP only; websockets pass through).

With ``TMS_BROWSER_ACCESS_LOG`` set, the status and request line of every
HTTP answer are appended to that file: the browser fetches some things on its
own (the favicon) without Playwright ever reporting them, and a test that says
"nothing on this page is broken" must see those too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from tms_console.asgi import application as console_application

Scope = dict[str, Any]
Message = dict[str, Any]


class AccessLog:
    """ASGI wrapper writing ``<status> <METHOD> <path>[?query]`` per HTTP answer to a file."""

    def __init__(self, app: Any, path: Path) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + (f"?{query}" if query else "")

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # One short append per answer: written whole, in the order the answers start.
                with self.path.open("a", encoding="utf-8") as log:
                    log.write(f"{message['status']} {scope['method']} {target}\n")
            await send(message)

        await self.app(scope, receive, recording_send)


_served = ASGIStaticFilesHandler(console_application)
_access_log = os.environ.get("TMS_BROWSER_ACCESS_LOG")
application: Any = AccessLog(_served, Path(_access_log)) if _access_log else _served
