"""Errors of the partner API as RFC 9457 problem details (``application/problem+json``).

Two layers produce them: the DRF exception handler for everything a view
raises, and ``ApiProblemMiddleware`` for what happens outside a DRF view under
``/api/`` (unknown URLs, oversized bodies, uncaught exceptions), so no error
under ``/api/`` ever leaves as an HTML page.

A client may ask for problem documents by name (``Accept:
application/problem+json``, alone or beside ``application/json``): the error
keeps its real status instead of turning into a 406
(``tms_console.negotiation``). Every answer under ``/api/`` carries
``Cache-Control: no-store``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db.models import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from tms_console.body_limits import body_limit
from tms_console.domain import Conflict, DomainError, IllegalTransition, NotFound
from tms_console.dual_middleware import DualModeMiddleware

# Re-exported: the API takes the media type from here, beside the problem helpers.
from tms_console.negotiation import PROBLEM_CONTENT_TYPE as PROBLEM_CONTENT_TYPE

log = logging.getLogger(__name__)

# Problem type URIs are relative references resolved against the API's base
# URL (RFC 9457 §3.1.1); each is documented in docs/api-versioning.md.
PROBLEM_BASE = "/api/v1/problems/"
API_PREFIXES = ("/api/",)


class ProblemError(Exception):
    """Raise from API code to answer with a specific problem; ``extra`` becomes extension members."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title
        self.headers = dict(headers or {})
        self.extra = extra


def problem_body(
    *, status: int, code: str, detail: str, instance: str = "", title: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"{PROBLEM_BASE}{code}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(
    request: HttpRequest | None,
    *,
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
    **extra: Any,
) -> HttpResponse:
    """A plain Django response carrying a problem document (for middleware and non-DRF views)."""
    body = problem_body(
        status=status, code=code, detail=detail, instance=request.path if request else "", title=title, **extra
    )
    response = HttpResponse(json.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _pointer(path: list[str]) -> str:
    # RFC 6901 JSON Pointer into the request body.
    escaped = [p.replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(escaped) if escaped else ""


def validation_errors(detail: Any, path: list[str] | None = None) -> list[dict[str, str]]:
    """Flatten DRF's nested error detail into ``[{pointer, detail, code}]``."""
    path = path or []
    out: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            sub = path if key in ("non_field_errors", "__all__") else [*path, str(key)]
            out.extend(validation_errors(value, sub))
    elif isinstance(detail, list):
        if all(isinstance(item, (str, drf_exceptions.ErrorDetail)) for item in detail):
            for item in detail:
                out.append({"pointer": _pointer(path), "detail": str(item), "code": getattr(item, "code", "invalid")})
        else:
            for index, item in enumerate(detail):
                if item:
                    out.extend(validation_errors(item, [*path, str(index)]))
    else:
        out.append({"pointer": _pointer(path), "detail": str(detail), "code": getattr(detail, "code", "invalid")})
    return out


_DRF_CODES: dict[type[drf_exceptions.APIException], str] = {
    drf_exceptions.ParseError: "malformed-request",
    drf_exceptions.AuthenticationFailed: "invalid-token",
    drf_exceptions.NotAuthenticated: "authentication-required",
    drf_exceptions.PermissionDenied: "forbidden",
    drf_exceptions.NotFound: "not-found",
    drf_exceptions.MethodNotAllowed: "method-not-allowed",
    drf_exceptions.NotAcceptable: "not-acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported-media-type",
    drf_exceptions.Throttled: "rate-limited",
}


def _problem(
    request: Any,
    status: int,
    code: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    title: str | None = None,
    **extra: Any,
) -> Response:
    path = getattr(request, "path", "") if request is not None else ""
    body = problem_body(status=status, code=code, detail=detail, instance=path, title=title, **extra)
    response = Response(body, status=status, headers=dict(headers or {}), content_type=PROBLEM_CONTENT_TYPE)
    return response


def problem_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``: every error a view raises becomes a problem document."""
    request = context.get("request")
    set_rollback()
    if isinstance(exc, ProblemError):
        return _problem(request, exc.status, exc.code, exc.detail, exc.headers, exc.title, **exc.extra)
    if isinstance(exc, (Http404, ObjectDoesNotExist, NotFound)):
        return _problem(request, 404, "not-found", "No such resource for this client.")
    if isinstance(exc, DjangoPermissionDenied):
        return _problem(request, 403, "forbidden", "You do not have permission to perform this action.")
    if isinstance(exc, IllegalTransition):
        # The request is well-formed but the resource's current state refuses it.
        return _problem(request, 409, "illegal-transition", exc.message, current=exc.current, target=exc.target)
    if isinstance(exc, Conflict):
        # A conflict may name its own problem type (e.g. ``route-plan-required``).
        return _problem(request, 409, getattr(exc, "problem_code", "conflict"), exc.message)
    if isinstance(exc, DomainError):
        # Syntactically valid input that the domain rules refuse.
        errors = [{"pointer": _pointer([exc.field]) if exc.field else "", "detail": exc.message, "code": exc.code}]
        return _problem(request, 422, "domain-rule", exc.message, errors=errors)
    if isinstance(exc, drf_exceptions.ValidationError):
        return _problem(
            request,
            400,
            "validation-error",
            "The request body has invalid fields.",
            errors=validation_errors(exc.detail),
        )
    if isinstance(exc, drf_exceptions.APIException):
        headers: dict[str, str] = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait + 0.999))  # type: ignore[attr-defined]
        code = _DRF_CODES.get(type(exc), "error")
        for cls, name in _DRF_CODES.items():
            if isinstance(exc, cls):
                code = name
                break
        status = exc.status_code
        extra_headers = getattr(exc, "extra_headers", None) or {}
        headers.update(extra_headers)
        extra = getattr(exc, "problem_extra", None) or {}
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return _problem(request, status, getattr(exc, "problem_code", code), detail, headers, **extra)
    return None  # let the middleware turn it into a 500 problem


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIXES)


class ApiProblemMiddleware(DualModeMiddleware):
    """Under ``/api/``: refuse oversized bodies (413), turn any non-problem error into one, and forbid caching.

    Django's own 404 page and uncaught exceptions would otherwise answer in
    HTML, which a machine client cannot read.
    """

    def call(self, request: HttpRequest) -> HttpResponseBase:
        if not _is_api(request):
            return self.respond(request)
        refusal = self._refusal(request)
        response = refusal if refusal is not None else self._converted(request, self.respond(request))
        return self._no_store(response)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        if not _is_api(request):
            return await self.arespond(request)
        refusal = self._refusal(request)
        response = refusal if refusal is not None else self._converted(request, await self.arespond(request))
        return self._no_store(response)

    @staticmethod
    def _no_store(response: HttpResponseBase) -> HttpResponseBase:
        # Every API answer is about one client's data (or refuses it): no shared or private cache may
        # keep one, as RFC 6749 §5.1 already asks of the token answer.
        response["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def _refusal(request: HttpRequest) -> HttpResponse | None:
        """A body refused by its declared length, before the view reads it."""
        limit = body_limit(request.path)  # API_MAX_BODY_BYTES, or a streamed path's own limit
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return problem_response(request, status=400, code="malformed-request", detail="Bad Content-Length.")
        if length > limit:
            return problem_response(
                request,
                status=413,
                code="body-too-large",
                detail=f"The request body is {length} bytes; the limit is {limit}.",
                max_body_bytes=limit,
            )
        return None

    @staticmethod
    def _converted(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        content_type = response.get("Content-Type", "")
        if response.status_code >= 400 and not content_type.startswith(PROBLEM_CONTENT_TYPE):
            status = response.status_code
            code = {404: "not-found", 405: "method-not-allowed", 413: "body-too-large"}.get(status, "error")
            converted = problem_response(request, status=status, code=code, detail=HTTPStatus(status).phrase)
            for header in ("Allow", "WWW-Authenticate", "Retry-After"):
                if header in response:
                    converted[header] = response[header]
            return converted
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _is_api(request):
            return None
        if isinstance(exception, RequestDataTooBig):
            return problem_response(request, status=413, code="body-too-large", detail="The request body is too large.")
        if isinstance(exception, SuspiciousOperation):
            return problem_response(request, status=400, code="malformed-request", detail="The request was refused.")
        if isinstance(exception, Http404):
            return problem_response(request, status=404, code="not-found", detail="No such resource.")
        log.exception("unhandled API error", extra={"path": request.path})
        return problem_response(
            request,
            status=500,
            code="internal-error",
            detail="The server failed to handle this request; it has been logged.",
            request_id=getattr(request, "request_id", ""),
        )
