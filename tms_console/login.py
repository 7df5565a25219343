"""The console's two-factor login: the guard on guessing at its password step, reasons at its code step.

django-two-factor-auth's ``LoginView`` asks for the password, then the
one-time code; django-otp already backs off on wrong codes (kept as is). The
password step here first reserves a guess in the user's budget for this
address and in the address's own (``tms_console.auth_guard``); a right
password gives it back. Once a budget is spent the form says so (and the
answer is 429 with ``Retry-After``), whatever the password, until the window
slides on; the same user can still sign in from another address.

The code step says why it refused a code: malformed (a form error, and no
guess spent), wrong, already used, expired, not valid yet (the phone's clock
is ahead), or too many wrong codes in a row (django-otp's back-off: 429 with
``Retry-After``). When the sign-in can no longer take a code at all (its
password was accepted too long ago, or the session no longer holds it: it was
started over elsewhere or the session ended), the password step comes back
with that reason, never silently. A plain GET of the login page (a second
tab, or a browser fetching a missing file and being sent here) no longer
throws away a sign-in that is waiting for its code.
"""

from __future__ import annotations

import enum
import logging
import math
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_otp.oath import TOTP, hotp
from django_otp.plugins.otp_totp.models import TOTPDevice
from two_factor.forms import AuthenticationTokenForm
from two_factor.utils import totp_digits
from two_factor.views import LoginView

from tms_console.auth_guard import GuardKind, GuessRefused, attempt_begin
from tms_console.client_address import client_address

security_log = logging.getLogger("tms_console.security")

_REFUSAL_ATTRIBUTE = "auth_guard_refusal"
_CODE_BACKOFF_ATTRIBUTE = "otp_backoff_seconds"

# How far from now a refused code is looked for, in time steps (20 x 30 s: ten minutes either way), to tell
# an old or early code from a wrong one. Only the message depends on it: no such code is ever accepted.
CODE_LOOKAROUND_STEPS = 20


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


# --- The code step ----------------------------------------------------------------------------


class CodeRefusal(enum.StrEnum):
    """Why a well-formed one-time code was refused (also the form error's code)."""

    WRONG = "code_wrong"
    REPLAYED = "code_replayed"
    EXPIRED = "code_expired"
    EARLY = "code_early"


REFUSAL_MESSAGES: dict[CodeRefusal, str] = {
    CodeRefusal.WRONG: (
        "That code is not right. Enter the code your authenticator app shows for TMS Console right now."
    ),
    CodeRefusal.REPLAYED: (
        "That code has already been used. Wait for your authenticator app to show a new code "
        "(it changes every 30 seconds) and enter that one."
    ),
    CodeRefusal.EXPIRED: (
        "That code has expired. Enter the code your authenticator app shows now; if a fresh code is refused "
        "too, your phone's clock is behind: set it to automatic time."
    ),
    CodeRefusal.EARLY: (
        "That code is not valid yet: your phone's clock is ahead. Set it to automatic time, then enter the "
        "code it shows."
    ),
}


def totp_refusal(device: TOTPDevice, code: str, *, now: float | None = None) -> CodeRefusal:
    """Why ``device`` refused ``code`` (call it only once the device has refused it).

    The code is looked for among the device's codes around now: inside the
    window the device accepts it can only have been refused as already used
    (django-otp accepts each time step once); before or after that window it
    is an old code or a code from a clock running ahead; nowhere, a wrong code.
    """
    if not code.isdigit():
        return CodeRefusal.WRONG
    value = int(code)
    clock = TOTP(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=device.drift)
    if now is not None:
        clock.time = now
    current = clock.t()
    # Nearest matching step first: a code that matches two steps is judged by the closer one.
    for distance in range(CODE_LOOKAROUND_STEPS + 1):
        for t in sorted({current - distance, current + distance}):
            if t < 0 or hotp(device.bin_key, t, digits=device.digits) != value:
                continue
            if abs(t - current) <= device.tolerance:
                return CodeRefusal.REPLAYED
            return CodeRefusal.EXPIRED if t < current else CodeRefusal.EARLY
    return CodeRefusal.WRONG


class OneTimeCodeField(forms.CharField):
    """A code of exactly ``digits`` digits; spaces (as apps show "123 456") are dropped."""

    def __init__(self, *, digits: int, **kwargs: Any) -> None:
        self.digits = digits
        kwargs.setdefault(
            "error_messages",
            {"required": f"Enter the {digits}-digit code from your authenticator app."},
        )
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str:
        text = super().to_python(value)
        return "".join((text or "").split())

    def validate(self, value: str) -> None:
        super().validate(value)
        if not value:
            return
        if not value.isascii() or not value.isdigit():
            raise ValidationError(
                "A code is %(digits)d digits (0-9) only, no letters.", code="not_digits", params={"digits": self.digits}
            )
        if len(value) != self.digits:
            raise ValidationError(
                "A code has exactly %(digits)d digits; this one has %(length)d.",
                code="wrong_length",
                params={"digits": self.digits, "length": len(value)},
            )


def _backoff_message(seconds: int) -> str:
    return (
        f"Too many wrong codes in a row: code checks are paused for {seconds} more second(s). "
        "Wait, then enter the code your authenticator app shows."
    )


class ConsoleTokenForm(AuthenticationTokenForm):
    """two_factor's code form, saying why it refused a code.

    Malformed input is a field error and never reaches the device, so it does
    not count toward the back-off. A well-formed code goes to django-otp as
    before (its back-off and its once-per-time-step rule stay in force); a
    refusal is then explained (``totp_refusal``).
    """

    otp_token = OneTimeCodeField(
        label="Code",
        digits=totp_digits(),
        widget=forms.TextInput(
            attrs={"autofocus": "autofocus", "inputmode": "numeric", "autocomplete": "one-time-code"}
        ),
    )

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = self.cleaned_data
        if self.has_error("otp_token"):
            return cleaned
        device = self.initial_device
        self._refuse_while_backing_off(device)
        try:
            self.clean_otp(self.user)
        except ValidationError as error:
            raise self._explained(error, device) from None
        return cleaned

    def _refuse_while_backing_off(self, device: Any) -> None:
        if device is None:
            return
        allowed, detail = device.verify_is_allowed()
        locked_until = (detail or {}).get("locked_until")
        if allowed or locked_until is None:
            return
        seconds = max(1, math.ceil((locked_until - timezone.now()).total_seconds()))
        request = getattr(self, "request", None)
        if request is not None:
            setattr(request, _CODE_BACKOFF_ATTRIBUTE, seconds)
        self._log_refusal("too_many_attempts")
        raise ValidationError(_backoff_message(seconds), code="too_many_attempts")

    def _explained(self, error: ValidationError, device: Any) -> ValidationError:
        if getattr(error, "code", None) != "invalid_token":
            return error
        code = str(self.cleaned_data.get("otp_token", ""))
        if isinstance(device, TOTPDevice):
            reason = totp_refusal(device, code)
            self._log_refusal(reason.value)
            return ValidationError(REFUSAL_MESSAGES[reason], code=reason.value)
        self._log_refusal("backup_code_unknown")
        return ValidationError(
            "That is not one of your unused backup codes (each backup code works once).",
            code="backup_code_unknown",
        )

    def _log_refusal(self, reason: str) -> None:
        security_log.info(
            "one-time code refused",
            extra={"event": "auth.code_refused", "reason": reason, "user_id": getattr(self.user, "pk", None)},
        )


class ConsoleBackupTokenForm(ConsoleTokenForm):
    """The backup-code step: any non-empty code, checked against the user's unused backup codes."""

    otp_token = forms.CharField(  # type: ignore[assignment]  # any text: backup codes are not digits
        label="Backup code",
        error_messages={"required": "Enter one of your backup codes."},
        widget=forms.TextInput(attrs={"autofocus": "autofocus", "autocomplete": "off"}),
    )


# --- The view ---------------------------------------------------------------------------------


class SignInRestart(enum.StrEnum):
    """Why the password is asked for again instead of checking a code."""

    TIMED_OUT = "timed_out"
    LOST = "lost"


def restart_message(reason: SignInRestart) -> str:
    if reason is SignInRestart.TIMED_OUT:
        minutes = max(1, round(int(getattr(settings, "TWO_FACTOR_LOGIN_TIMEOUT", 600)) / 60))
        return (
            f"Your password was accepted more than {minutes} minute(s) ago, so a code can no longer finish "
            "that sign-in. Enter your password again."
        )
    return (
        "This sign-in was no longer waiting for a code: it was started over in another tab or window, or its "
        "session ended. Nothing was signed in; enter your password again."
    )


class GuardedLoginView(LoginView):
    """``two_factor``'s login with the guarded password step and the explaining code steps."""

    form_list = (
        (LoginView.AUTH_STEP, GuardedAuthenticationForm),
        (LoginView.TOKEN_STEP, ConsoleTokenForm),
        (LoginView.BACKUP_STEP, ConsoleBackupTokenForm),
    )
    _code_forms: dict[str, type[forms.Form]] = {
        LoginView.TOKEN_STEP: ConsoleTokenForm,
        LoginView.BACKUP_STEP: ConsoleBackupTokenForm,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restart_reason: SignInRestart | None = None

    def get_prefix(self, request: Any, *args: Any, **kwargs: Any) -> str:
        # The wizard's field prefix comes from the class name: keep two_factor's, the form posts it.
        return "login_view"

    def get_form_list(self) -> dict[str, type[forms.Form]]:
        # two_factor sets the token step's form from the device's method on every request (plain
        # AuthenticationTokenForm for TOTP, the only method the console enables): keep the console's.
        form_list: dict[str, type[forms.Form]] = super().get_form_list()
        for step, form_class in self._code_forms.items():
            if step in form_list:
                form_list[step] = form_class
        return form_list

    def get_form(self, step: str | None = None, **kwargs: Any) -> Any:
        # two_factor's own timeout note ("Your session has timed out") gives way to the console's reasons.
        timed_out = bool(getattr(self, "show_timeout_error", False))
        self.show_timeout_error = False
        try:
            form = super().get_form(step=step, **kwargs)
        finally:
            self.show_timeout_error = timed_out
        if timed_out and self.restart_reason is None:
            self.restart_reason = SignInRestart.TIMED_OUT
        if self.restart_reason is not None and (step or self.steps.current) == self.AUTH_STEP:
            form.cleaned_data = getattr(form, "cleaned_data", {})
            form.add_error(None, ValidationError(restart_message(self.restart_reason), code=self.restart_reason.value))
        if step in self._code_forms or (step is None and self.steps.current in self._code_forms):
            form.request = self.request  # where the code form leaves the back-off for the answer's status
        return form

    def _waiting_for_code(self) -> bool:
        step = self.storage.current_step
        return bool(step in self._code_forms and self.get_user() and not self.expired and step in self.steps.all)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if self._waiting_for_code():
            # Loading the page again (another tab, or a browser's request for a missing file that the
            # sign-in gate sent here) must not throw away a sign-in that waits for its code.
            response: HttpResponse = self.render(self.get_form())
            return response
        return super().get(request, *args, **kwargs)  # type: ignore[no-any-return]

    def post(self, *args: Any, **kwargs: Any) -> HttpResponse:
        lost = self._lost_code_step()
        if lost:
            security_log.info(
                "sign-in code step no longer valid",
                extra={"event": "auth.code_step_lost", "step": lost},
            )
            self.storage.reset()
            self.storage.current_step = self.AUTH_STEP
            self.restart_reason = SignInRestart.LOST
            response: HttpResponse = self.render_goto_step(self.AUTH_STEP)
            return response
        response = super().post(*args, **kwargs)
        refused: GuessRefused | None = getattr(self.request, _REFUSAL_ATTRIBUTE, None)
        if refused is not None:
            # The page shows the form error; a script reads the status and when to come back.
            response.status_code = 429
            response["Retry-After"] = str(refused.retry_after)
        backoff: int | None = getattr(self.request, _CODE_BACKOFF_ATTRIBUTE, None)
        if backoff is not None:
            response.status_code = 429
            response["Retry-After"] = str(backoff)
        return response

    def _lost_code_step(self) -> str | None:
        """The code step a form was posted from, if this session can no longer check a code for it.

        two_factor would log "Requested step ... is no longer valid" and show an empty
        password form without a word; the console says why instead.
        """
        if self.request.POST.get("wizard_goto_step") == self.AUTH_STEP:
            return None  # "Start over": asked for
        posted: str | None = self.request.POST.get(f"{self.prefix}-current_step")
        if posted not in self._code_forms:
            return None  # the password step, or a form two_factor refuses itself (no or a made-up step)
        if self.get_user() and self.expired:
            return None  # two_factor's own timeout path (storage intact), worded by ``get_form``
        if self.get_user() and posted in self.steps.all:
            return None
        return posted
