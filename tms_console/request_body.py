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
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from django.conf import settings

from tms_console.problem import API_PREFIXES, PROBLEM_CONTENT_TYPE, problem_body

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

READ_CHUNK_BYTES = 65_536
_LIMITED_PREFIXES = (*API_PREFIXES, "/oauth2/")


def body_limit(path: str) -> int:
    """The most body bytes a request to ``path`` may carry."""
    if path.startswith(_LIMITED_PREFIXES) or path == "/oauth2/token":
        return int(settings.API_MAX_BODY_BYTES)
    return int(settings.DATA_UPLOAD_MAX_MEMORY_SIZE or settings.API_MAX_BODY_BYTES)


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
