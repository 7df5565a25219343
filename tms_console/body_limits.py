"""How many body bytes a request path may carry, and which paths stream their body to the view.

Most requests are read whole before the view runs, under ``API_MAX_BODY_BYTES``
(``/api/``, ``/oauth2/``) or ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (the console's
forms). A *streamed* path (the telemetry backfill) registers its own, larger
limit here from its app's ``ready``; for it the servers' body code
(``tms_console.request_body``, ``tms_console.daphne_bodies``) and the API's
413 check (``tms_console.problem``) apply that limit and never hold the body in
memory: the view reads it incrementally (``request_body.body_stream``).

Kept apart from ``tms_console.request_body``, which imports the problem
helpers: the problem middleware needs the limits too.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings

# The partner API and the OAuth endpoints (``tms_console.problem.API_PREFIXES`` plus OAuth).
LIMITED_PREFIXES = ("/api/", "/oauth2/")

_streamed: dict[str, Callable[[], int]] = {}


def streamed_body_register(path: str, limit: Callable[[], int]) -> None:
    """Declare that requests to exactly ``path`` stream their body to the view, up to ``limit()`` bytes."""
    _streamed[path] = limit


def streamed_limit(path: str) -> int | None:
    """The body limit of a streamed path, or None for a path whose body is read whole."""
    limit = _streamed.get(path)
    return None if limit is None else int(limit())


def body_limit(path: str) -> int:
    """The most body bytes a request to ``path`` may carry."""
    streamed = streamed_limit(path)
    if streamed is not None:
        return streamed
    if path.startswith(LIMITED_PREFIXES) or path == "/oauth2/token":
        return int(settings.API_MAX_BODY_BYTES)
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or settings.API_MAX_BODY_BYTES)
