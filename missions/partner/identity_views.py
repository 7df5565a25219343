"""Console page for a carrier's vehicle identity: its SPIFFE trust domain and the CA certificates of its bundle.

Platform administrators register the trust domain (and whether the carrier's
telemetry requires SVIDs), paste or upload CA certificates (PEM) and retire old
ones after a rotation. The services check everything; their errors are shown
next to the field (docs/identity.md).
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.identity import selectors as identity_selectors
from missions.identity import services as identity_services
from missions.models import Carrier
from missions.models.identity import TrustBundleCertificate
from tms_console.domain import DomainError
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_PLATFORM

BUNDLE_UPLOAD_MAX_BYTES = 256 * 1024


class TrustDomainForm(forms.Form):
    name = forms.CharField(label="Trust domain", max_length=255, help_text="e.g. carrier-a.example")
    svid_required = forms.BooleanField(label="Telemetry requires a vehicle SVID", required=False, initial=True)


class BundleForm(forms.Form):
    pem = forms.CharField(
        label="CA certificates (PEM)",
        required=False,
        max_length=BUNDLE_UPLOAD_MAX_BYTES,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 70}),
    )
    pem_file = forms.FileField(label="or a PEM file", required=False)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        upload = data.get("pem_file")
        if upload is not None:
            if upload.size > BUNDLE_UPLOAD_MAX_BYTES:
                raise forms.ValidationError(f"The file is over {BUNDLE_UPLOAD_MAX_BYTES // 1024} KiB.")
            try:
                data["pem"] = upload.read().decode("ascii")
            except UnicodeDecodeError:
                raise forms.ValidationError("The file is not PEM text.") from None
        if not data.get("pem"):
            raise forms.ValidationError("Paste PEM certificates or choose a file.")
        return data


def _page(
    request: HttpRequest,
    carrier: Carrier,
    *,
    domain_form: TrustDomainForm | None = None,
    bundle_form: BundleForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    domain = identity_selectors.carrier_trust_domain(carrier.pk)
    initial = {"name": domain.name, "svid_required": domain.svid_required} if domain else {"svid_required": True}
    return render(
        request,
        "partners/identity.html",
        {
            "carrier": carrier,
            "domain": domain,
            "domain_form": domain_form or TrustDomainForm(initial=initial),
            "bundle_form": bundle_form or BundleForm(),
            "bundle": identity_selectors.carrier_bundle(carrier.pk),
            "error": error,
            "nav": "carriers",
        },
        status=status,
    )


@console_permission_required(MANAGE_PLATFORM)
def carrier_identity(request: HttpRequest, carrier_pk: int) -> HttpResponse:
    return _page(request, get_object_or_404(Carrier, pk=carrier_pk))


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def carrier_trust_domain_set(request: HttpRequest, carrier_pk: int) -> HttpResponse:
    carrier = get_object_or_404(Carrier, pk=carrier_pk)
    form = TrustDomainForm(request.POST)
    if form.is_valid():
        try:
            identity_services.trust_domain_set(
                carrier_id=carrier.pk,
                name=form.cleaned_data["name"],
                svid_required=form.cleaned_data["svid_required"],
                actor=Actor.for_user(request.user),
            )
        except DomainError as exc:
            form.add_error("name", exc.message)
        else:
            return redirect("partners:carrier_identity", carrier_pk=carrier.pk)
    return _page(request, carrier, domain_form=form, status=400)


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def carrier_bundle_add(request: HttpRequest, carrier_pk: int) -> HttpResponse:
    carrier = get_object_or_404(Carrier, pk=carrier_pk)
    form = BundleForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            identity_services.trust_bundle_add(
                carrier_id=carrier.pk, pem_text=str(form.cleaned_data["pem"]), actor=Actor.for_user(request.user)
            )
        except DomainError as exc:
            form.add_error("pem", exc.message)
        else:
            return redirect("partners:carrier_identity", carrier_pk=carrier.pk)
    return _page(request, carrier, bundle_form=form, status=400)


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def carrier_bundle_retire(request: HttpRequest, carrier_pk: int, pk: int) -> HttpResponse:
    carrier = get_object_or_404(Carrier, pk=carrier_pk)
    certificate = get_object_or_404(TrustBundleCertificate, pk=pk, carrier=carrier)
    try:
        identity_services.trust_bundle_retire(certificate_id=certificate.pk, actor=Actor.for_user(request.user))
    except DomainError as exc:
        return _page(request, carrier, error=exc.message, status=409)
    return redirect("partners:carrier_identity", carrier_pk=carrier.pk)
