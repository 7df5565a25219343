"""Request id propagation and the two-factor gate in front of every console page."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django_otp import user_has_device

from tms_console.logging import correlation_id_var, request_id_var
from tms_console.permissions import is_verified

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
# (it has its own OAuth2 authentication) and its public OAuth metadata (RFC 8414),
# static files and health checks. Signing out is harmless for anyone, so it is open too.
_OPEN_PREFIXES = (
    "/account/login/",
    "/account/logout/",
    "/static/",
    "/api/",
    "/oauth2/",
    "/.well-known/oauth-authorization-server",
    "/healthz",
    "/readyz",
    "/metrics",
    "/webhooks/",
)
# What a signed-in user without a device may reach: enrollment only.
_ENROLL_PREFIXES = ("/account/two_factor/setup/", "/account/two_factor/qrcode/")
# Two-factor authentication is mandatory, so the "turn it off" page is not offered.
_CLOSED_PREFIXES = ("/account/two_factor/disable/",)


class RequireOTPMiddleware:
    """No console page (admin included) is reachable with a password alone.

    * anonymous: sent to the login page (with ``next``);
    * signed in with a password and holding a device, but no verified code in
      this session: signed out and sent back to the login page (the code step
      was skipped, e.g. a session created by another login path);
    * signed in without any device: sent to enrollment, and may reach nothing
      else until a device is confirmed;
    * verified: passes.

    ``/api/`` and ``/oauth2/`` are not gated here: machine clients use OAuth2.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path.startswith(_CLOSED_PREFIXES):
            raise Http404("Two-factor authentication cannot be turned off.")
        if path.startswith(_OPEN_PREFIXES):
            return self.get_response(request)
        user = request.user
        login_url = resolve_url(settings.LOGIN_URL)
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url)
        if is_verified(user):
            return self.get_response(request)
        if path.startswith(_ENROLL_PREFIXES):
            return self.get_response(request)
        if user_has_device(user, confirmed=True):
            # Password accepted earlier but the code step was never completed.
            logout(request)
            return redirect_to_login(request.get_full_path(), login_url)
        return HttpResponseRedirect(reverse("two_factor:setup"))
