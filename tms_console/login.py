"""The console's two-factor login with the guard on guessing at its password step.

django-two-factor-auth's ``LoginView`` asks for the password, then the
one-time code; django-otp already backs off on wrong codes (kept as is). The
password step here first reserves a guess in the user's budget for this
address and in the address's own (``tms_console.auth_guard``); a right
password gives it back. Once a budget is spent the form says so (and the
answer is 429 with ``Retry-After``), whatever the password, until the window
slides on; the same user can still sign in from another address.
"""

from __future__ import annotations

import math
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from two_factor.forms import AuthenticationTokenForm, BackupTokenForm
from two_factor.views import LoginView

from tms_console.auth_guard import GuardKind, GuessRefused, attempt_begin
from tms_console.client_address import client_address

_REFUSAL_ATTRIBUTE = "auth_guard_refusal"


class GuardedAuthenticationForm(AuthenticationForm):
    """Django's password form, spending a guess from the guard's budgets on every wrong password."""

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if not username or not password or self.request is None:
            return super().clean()  # a missing field is not a guess
        try:
            attempt = attempt_begin(
                kind=GuardKind.PASSWORD, identity=str(username), address=client_address(self.request.META)
            )
        except GuessRefused as refused:
            setattr(self.request, _REFUSAL_ATTRIBUTE, refused)
            minutes = max(1, math.ceil(refused.retry_after / 60))
            raise ValidationError(
                "Too many failed sign-in attempts from this address. Try again in %(minutes)d minute(s).",
                code="too_many_failures",
                params={"minutes": minutes},
            ) from None
        try:
            cleaned = super().clean()
        except ValidationError:
            model = get_user_model()
            user = model._default_manager.filter(**{model.USERNAME_FIELD: username}).first()
            attempt.failed(
                reason="wrong password" if user is not None else "unknown user",
                subject_type="user" if user is not None else None,
                subject_id=user.pk if user is not None else None,
            )
            raise
        attempt.succeeded()
        return cleaned


class GuardedLoginView(LoginView):
    """``two_factor``'s login with ``GuardedAuthenticationForm`` at the password step."""

    form_list = (
        (LoginView.AUTH_STEP, GuardedAuthenticationForm),
        (LoginView.TOKEN_STEP, AuthenticationTokenForm),
        (LoginView.BACKUP_STEP, BackupTokenForm),
    )

    def get_prefix(self, request: Any, *args: Any, **kwargs: Any) -> str:
        # The wizard's field prefix comes from the class name: keep two_factor's, the form posts it.
        return "login_view"

    def post(self, *args: Any, **kwargs: Any) -> HttpResponse:
        response: HttpResponse = super().post(*args, **kwargs)
        refused: GuessRefused | None = getattr(self.request, _REFUSAL_ATTRIBUTE, None)
        if refused is not None:
            # The page shows the form error; a script reads the status and when to come back.
            response.status_code = 429
            response["Retry-After"] = str(refused.retry_after)
        return response
