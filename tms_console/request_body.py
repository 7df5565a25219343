"""Request bodies read in full, framed by ``Content-Length`` or chunked, and never read past the limit.

A client may send a body with ``Transfer-Encoding: chunked`` and no
``Content-Length`` (RFC 9112 §6.1); many HTTP libraries do for a streamed
body. Django reads a WSGI body only up to ``CONTENT_LENGTH`` (none: an empty
body, even though gunicorn decodes the chunks and marks the input
``wsgi.input_terminated``), and DRF treats a request without a length as one
without a body, so a valid chunked request was answered "field required" and
a huge one was never refused.

The limit is ``API_MAX_BODY_BYTES`` under ``/api/`` and ``/oauth2/`` and
``DATA_UPLOAD_MAX_MEMORY_SIZE`` elsewhere (the console posts small forms).
A declared length over it is refused before any byte of the body is read; a
chunked body is read up to one byte past it, so at most ``limit + 1`` bytes
are ever held, and refused the moment it passes. Either way the answer is
413 ``application/problem+json``.

``BodyLimitWSGI`` does this for WSGI servers that terminate the input
(gunicorn: ``tms_console.wsgi`` puts it in front of everything, the webhook
fast path included); ``tms_console.daphne_bodies`` does it inside daphne,
which otherwise buffers a whole body before the application sees any of it.

A *streamed* path (``tms_console.body_limits``: the telemetry backfill) has
its own limit and is never held in memory: ``BodyLimitWSGI`` refuses a
declared length over it and otherwise hands the input on untouched, daphne
keeps the body in its temporary file and hands that file to the application
(``SCOPE_BODY_KEY``), and the view reads whichever it gets through
``body_stream``, enforcing the limit as it reads.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import unquote

from django.http import HttpRequest

from tms_console.body_limits import body_limit, streamed_limit
from tms_console.problem import PROBLEM_CONTENT_TYPE, problem_body

__all__ = [
    "READ_CHUNK_BYTES",
    "SCOPE_BODY_KEY",
    "BodyLimitWSGI",
    "BodyReader",
    "body_limit",
    "body_stream",
    "is_chunked",
    "path_of_target",
    "read_limited",
    "too_large",
]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

READ_CHUNK_BYTES = 65_536
# The ASGI scope key under which daphne hands a streamed path's body file to the application.
SCOPE_BODY_KEY = "tms_console.body_file"


def path_of_target(target: bytes) -> str:
    """The decoded path of a request-target (origin or absolute form), as Django will route it."""
    raw = target.split(b"?", 1)[0]
    if not raw.startswith(b"/"):  # absolute form: scheme://authority/path
        scheme_end = raw.find(b"://")
        slash = raw.find(b"/", scheme_end + 3) if scheme_end >= 0 else -1
        raw = raw[slash:] if slash >= 0 else b"/"
    return unquote(raw.decode("latin-1"))


def too_large(*, path: str, limit: int, declared: int | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """The 413 answer: (status, headers, body)."""
    if declared is not None:
        detail = f"The request body is {declared} bytes; the limit is {limit}."
    else:
        detail = f"The request body passed the limit of {limit} bytes; the rest was not read."
    body = json.dumps(
        problem_body(status=413, code="body-too-large", detail=detail, instance=path, max_body_bytes=limit)
    ).encode()
    headers = [
        ("Content-Type", PROBLEM_CONTENT_TYPE),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        # The unread rest of the body is still on its way: the connection cannot carry another request.
        ("Connection", "close"),
    ]
    return 413, headers, body


def read_limited(stream: Any, limit: int) -> bytes | None:
    """Read ``stream`` to its end, or None as soon as it has given more than ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(READ_CHUNK_BYTES, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def is_chunked(transfer_encoding: str) -> bool:
    return transfer_encoding.rsplit(",", 1)[-1].strip().lower() == "chunked"


class BodyLimitWSGI:
    """WSGI middleware: refuse bodies over the limit (413) and hand chunked bodies on with a length.

    Only a server that marks its input ``wsgi.input_terminated`` (PEP 3333
    leaves reading past ``CONTENT_LENGTH`` undefined otherwise) gets its
    chunked bodies read here; gunicorn does.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared:
            try:
                length = int(declared)
            except ValueError:
                return self.app(environ, start_response)  # Django answers 400
            limit = body_limit(path)
            if length > limit:
                return _answer(start_response, too_large(path=path, limit=limit, declared=length))
            return self.app(environ, start_response)
        if not is_chunked(environ.get("HTTP_TRANSFER_ENCODING", "")) or not environ.get("wsgi.input_terminated"):
            return self.app(environ, start_response)
        if streamed_limit(path) is not None:
            return self.app(environ, start_response)  # read, under its limit, by the view (``body_stream``)
        limit = body_limit(path)
        body = read_limited(environ["wsgi.input"], limit)
        if body is None:
            return _answer(start_response, too_large(path=path, limit=limit))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _answer(start_response: Callable[..., Any], answer: tuple[int, list[tuple[str, str]], bytes]) -> list[bytes]:
    status, headers, body = answer
    # The server owns the connection headers; gunicorn closes a connection whose body was left unread.
    start_response(f"{status} {HTTPStatus(status).phrase}", [h for h in headers if h[0] != "Connection"])
    return [body]


class BodyReader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def body_stream(request: HttpRequest) -> BodyReader:
    """The whole body of a request to a streamed path, to be read incrementally, whatever served it.

    - daphne: the temporary file daphne received the body into (``SCOPE_BODY_KEY``);
    - another ASGI server: the request itself (Django spooled the body to a temporary file);
    - gunicorn, chunked: the server's terminated input, read as the body arrives;
    - WSGI with ``Content-Length``: the request itself (Django reads the input up to that length).

    The caller enforces the path's limit while reading (``streamed_limit``).
    """
    scope = getattr(request, "scope", None)
    if isinstance(scope, dict):
        handed = scope.get(SCOPE_BODY_KEY)
        if handed is not None:
            handed.seek(0)
            return cast(BodyReader, handed)
        return request
    environ = request.META
    if (
        not environ.get("CONTENT_LENGTH")
        and is_chunked(environ.get("HTTP_TRANSFER_ENCODING", ""))
        and environ.get("wsgi.input_terminated")
    ):
        return cast(BodyReader, environ["wsgi.input"])
    return request
