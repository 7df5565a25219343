"""The default admin site, behind the same one-time-code login as the console.

``django_otp.admin.OTPAdminSite`` treats a staff user who has not verified a
one-time code in this session as not staff. Instead of its own password +
token form we send people to the console's two-factor login, so there is
exactly one way in (and one place that throttles code guessing).

Importing this module swaps the class of ``django.contrib.admin.site`` in
place: every ``@admin.register`` that already ran keeps its registration and
the URL namespace stays ``admin``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp.admin import OTPAdminSite


class ConsoleAdminSite(OTPAdminSite):
    """Admin that needs a verified one-time code and logs in through ``two_factor:login``."""

    site_header = "TMS Console administration"
    site_title = "TMS Console admin"
    index_title = "Administration"

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        from tms_console.permissions import is_verified, permission_denied

        if is_verified(request.user):
            # Signed in with a code but not staff: another login would not help.
            return permission_denied(request)
        redirect_to = request.POST.get(REDIRECT_FIELD_NAME, request.GET.get(REDIRECT_FIELD_NAME, ""))
        if not redirect_to or not url_has_allowed_host_and_scheme(
            url=redirect_to, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            redirect_to = reverse(f"{self.name}:index")
        return redirect_to_login(redirect_to, resolve_url(settings.LOGIN_URL))


def install() -> None:
    """Make ``admin.site`` a ``ConsoleAdminSite`` (idempotent)."""
    if not isinstance(admin.site, ConsoleAdminSite):
        admin.site.__class__ = ConsoleAdminSite


install()

# The (now OTP-protected) default site, for ``urls.py``.
site = admin.site
