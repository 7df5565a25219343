"""Request id propagation and the two-factor gate in front of every console page."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from tms_console.logging import correlation_id_var, request_id_var

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    """Give every request an id (honouring a well-formed ``X-Request-ID``) and echo it back.

    A ``X-Correlation-ID`` header is accepted the same way so a partner's id
    shows up in our logs next to ours.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        corr = request.headers.get("X-Correlation-ID", "")
        request.request_id = request_id  # type: ignore[attr-defined]
        token_r = request_id_var.set(request_id)
        token_c = correlation_id_var.set(corr if _SAFE_ID.match(corr) else None)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token_r)
            correlation_id_var.reset(token_c)
        response["X-Request-ID"] = request_id
        return response


# Paths that never show console data: the login flow itself, the partner API
# (it has its own OAuth2 authentication), static files and health checks.
_OPEN_PREFIXES = ("/account/login/", "/static/", "/api/", "/oauth2/", "/healthz", "/metrics", "/webhooks/")
_ENROLL_PREFIXES = ("/account/two_factor/setup/", "/account/two_factor/qrcode/", "/account/logout/")


class RequireOTPMiddleware:
    """No console page (admin included) is reachable with a password alone.

    A user who signed in with a password but has not verified a one-time code
    is sent to enrollment (no device yet) or back to the login step; an
    anonymous user is sent to the login page.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if path.startswith(_OPEN_PREFIXES):
            return self.get_response(request)
        user = request.user
        if not user.is_authenticated:
            return HttpResponseRedirect(f"{reverse(settings.LOGIN_URL)}?next={path}")
        if user.is_verified():  # type: ignore[union-attr]
            return self.get_response(request)
        if path.startswith(_ENROLL_PREFIXES):
            return self.get_response(request)
        from django_otp import user_has_device

        if user_has_device(user):
            # Password accepted earlier but the code step was never completed.
            from django.contrib.auth import logout

            logout(request)
            return HttpResponseRedirect(f"{reverse(settings.LOGIN_URL)}?next={path}")
        return HttpResponseRedirect(reverse("two_factor:setup"))
