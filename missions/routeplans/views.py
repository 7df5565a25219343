"""Console page for carriers' route-plan signing keys: list, register a PEM public key, retire one.

Only administrators (``manage_platform``) see it. The service checks the key
(PEM, ECDSA P-256, public, not registered before) and its message is shown
next to the field.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.models import Carrier, CarrierSigningKey
from missions.routeplans import services
from missions.routeplans.selectors import signing_keys
from tms_console.domain import DomainError
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_PLATFORM

KEY_HELP = (
    "The carrier's cosign.pub: an ECDSA P-256 public key in PEM (-----BEGIN PUBLIC KEY-----). Plans the carrier "
    "signs with the matching private key (cosign sign-blob --key cosign.key) verify against it."
)


class SigningKeyForm(forms.Form):
    carrier = forms.ModelChoiceField(queryset=Carrier.objects.order_by("name"))
    name = forms.CharField(max_length=120, help_text="A label for the key, e.g. plans-2026")
    public_key = forms.CharField(
        label="Public key (PEM)",
        max_length=4096,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 66, "spellcheck": "false"}),
        help_text=KEY_HELP,
    )


def _page(request: HttpRequest, *, form: SigningKeyForm | None = None, status: int = 200) -> HttpResponse:
    return render(
        request,
        "partners/signing_keys.html",
        {"keys": signing_keys(), "form": form or SigningKeyForm(), "nav": "carriers"},
        status=status,
    )


@console_permission_required(MANAGE_PLATFORM)
def signing_key_list(request: HttpRequest) -> HttpResponse:
    return _page(request)


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def signing_key_create(request: HttpRequest) -> HttpResponse:
    form = SigningKeyForm(request.POST)
    if form.is_valid():
        try:
            key = services.signing_key_register(
                carrier_id=form.cleaned_data["carrier"].pk,
                name=form.cleaned_data["name"],
                public_key=form.cleaned_data["public_key"],
                actor=Actor.for_user(request.user),
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Key {key.name} ({key.key_id[:12]}) registered for {key.carrier.name}.")
            return redirect("partners:signing_keys")
    return _page(request, form=form, status=400)


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def signing_key_retire(request: HttpRequest, pk: int) -> HttpResponse:
    key = get_object_or_404(CarrierSigningKey, pk=pk)
    try:
        services.signing_key_retire(key_pk=key.pk, actor=Actor.for_user(request.user))
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Key {key.name} retired: it verifies no new plan.")
    return redirect("partners:signing_keys")
