"""Request id propagation, static files and the two-factor gate in front of every console page.

Each runs in the server's mode, sync under WSGI and as a coroutine under ASGI (``tms_console.dual_middleware``).
"""

from __future__ import annotations

import re
import uuid
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django_otp import user_has_device
from whitenoise.middleware import WhiteNoiseMiddleware

from tms_console.dual_middleware import DualModeMiddleware
from tms_console.logging import correlation_id_var, request_id_var
from tms_console.permissions import is_verified

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware(DualModeMiddleware):
    """Give every request an id (honouring a well-formed ``X-Request-ID``) and echo it back.

    A ``X-Correlation-ID`` header is accepted the same way so a partner's id
    shows up in our logs next to ours.
    """

    def call(self, request: HttpRequest) -> HttpResponseBase:
        tokens = self._enter(request)
        try:
            response = self.respond(request)
        finally:
            self._leave(tokens)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        tokens = self._enter(request)
        try:
            response = await self.arespond(request)
        finally:
            self._leave(tokens)
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        return response

    @staticmethod
    def _enter(request: HttpRequest) -> tuple[Token[str | None], Token[str | None]]:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
        corr = request.headers.get("X-Correlation-ID", "")
        request.request_id = request_id  # type: ignore[attr-defined]
        return request_id_var.set(request_id), correlation_id_var.set(corr if _SAFE_ID.match(corr) else None)

    @staticmethod
    def _leave(tokens: tuple[Token[str | None], Token[str | None]]) -> None:
        request_id_var.reset(tokens[0])
        correlation_id_var.reset(tokens[1])


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]  # whitenoise has no type hints
    """WhiteNoise's middleware, which is sync-only, able to run as a coroutine too.

    Under ASGI the file look-up (a ``stat`` per request while ``DEBUG``
    autorefreshes) and the opening of a static file run in a thread through
    ``sync_to_async``; every other request goes straight on down the chain.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, settings: Any = settings) -> None:
        super().__init__(get_response, settings)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            response: HttpResponseBase = await sync_to_async(self.serve)(static_file, request)
            return response
        result: HttpResponseBase = await self.get_response(request)
        return result


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
    # An invitation link is its own credential: whoever holds it creates the portal account (missions.onboarding).
    "/portal/invitations/",
    "/readyz",
    "/metrics",
    "/webhooks/",
)
# What a signed-in user without a device may reach: enrollment only.
_ENROLL_PREFIXES = ("/account/two_factor/setup/", "/account/two_factor/qrcode/")
# Two-factor authentication is mandatory, so the "turn it off" page is not offered.
_CLOSED_PREFIXES = ("/account/two_factor/disable/",)


class RequireOTPMiddleware(DualModeMiddleware):
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

    def call(self, request: HttpRequest) -> HttpResponseBase:
        if _is_open(request.path_info):
            return self.respond(request)
        refusal = self._refusal(request)
        return refusal if refusal is not None else self.respond(request)

    async def acall(self, request: HttpRequest) -> HttpResponseBase:
        if _is_open(request.path_info):
            return await self.arespond(request)
        # The session, the user and their devices are database reads: in a thread.
        refusal = await sync_to_async(self._refusal)(request)
        return refusal if refusal is not None else await self.arespond(request)

    @staticmethod
    def _refusal(request: HttpRequest) -> HttpResponseBase | None:
        """Where to send a request for a console page instead of serving it; None lets it through."""
        path = request.path_info
        user = request.user
        login_url = resolve_url(settings.LOGIN_URL)
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url)
        if is_verified(user):
            return None
        if path.startswith(_ENROLL_PREFIXES):
            return None
        if user_has_device(user, confirmed=True):
            # Password accepted earlier but the code step was never completed.
            logout(request)
            return redirect_to_login(request.get_full_path(), login_url)
        return HttpResponseRedirect(reverse("two_factor:setup"))


def _is_open(path: str) -> bool:
    """True for a path the gate lets through untouched; a closed one is refused here (404)."""
    if path.startswith(_CLOSED_PREFIXES):
        raise Http404("Two-factor authentication cannot be turned off.")
    return path.startswith(_OPEN_PREFIXES)
