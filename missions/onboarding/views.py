"""Onboarding pages: the carrier manager's invitations (console) and the carrier portal.

Console side (``MANAGE_CARRIERS``): the carriers in onboarding with their
invitations, a form to invite one (the link is shown once and mailed), and
withdrawing an unused invitation.

Carrier side: the invitation link (open to anyone holding it) creates one
portal account; from then on that person signs in as every console user does,
with a one-time code (the console's 2FA gate sends a new account to set up its
device first), and sees only their carrier's portal. Portal pages answer 404
to anyone who is not a member, so they do not reveal which carriers exist.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.mail import send_mail
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.evidence import services as evidence_services
from missions.models import Carrier, CarrierInvitation, CarrierMember, CertificationRun, CertificationStatus
from missions.models.onboarding import CarrierAuthMethod, ComplianceKind
from missions.onboarding import certification, compliance, golive, selectors, services, tasks
from missions.onboarding import marketplace as market
from tms_console.domain import Conflict, DomainError
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_CARRIERS, VIEW_CONSOLE


class InviteForm(forms.Form):
    legal_name = forms.CharField(label="Carrier's legal name", max_length=120)
    email = forms.EmailField(label="Email of its integration contact")


class AcceptForm(forms.Form):
    username = forms.CharField(label="User name", max_length=150)
    password = forms.CharField(label="Password", widget=forms.PasswordInput, max_length=128)
    password_again = forms.CharField(label="Password again", widget=forms.PasswordInput, max_length=128)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("password") and data.get("password") != data.get("password_again"):
            self.add_error("password_again", "The two passwords differ.")
        return data


class ProfileForm(forms.Form):
    legal_name = forms.CharField(label="Legal name", max_length=200)
    scac = forms.CharField(label="SCAC", max_length=4, required=False, help_text="2 to 4 capital letters")
    usdot_number = forms.CharField(label="USDOT number", max_length=8, required=False)
    mc_number = forms.CharField(label="MC number", max_length=8, required=False, help_text="digits only, no MC-")
    contact_name = forms.CharField(label="Integration contact", max_length=120, required=False)
    contact_email = forms.EmailField(label="Contact email", required=False)
    contact_phone = forms.CharField(label="Contact phone", max_length=32, required=False)
    odd_hours = forms.CharField(label="Operating hours", max_length=11, initial="00:00-24:00")
    odd_max_wind_kph = forms.IntegerField(label="Highest wind (km/h)", min_value=0, max_value=300, required=False)
    odd_min_visibility_m = forms.IntegerField(
        label="Lowest visibility (m)", min_value=0, max_value=100_000, required=False
    )
    odd_snow_allowed = forms.BooleanField(label="Operates in snow", required=False)
    sandbox_api_url = forms.CharField(label="Sandbox API base URL", max_length=500, required=False)
    sandbox_client_id = forms.CharField(label="Sandbox OAuth client id", max_length=200, required=False)
    sandbox_client_secret = forms.CharField(
        label="Sandbox OAuth client secret",
        max_length=200,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="test credentials of the sandbox only; leave blank to keep the one stored",
    )
    production_api_url = forms.CharField(label="Production API base URL", max_length=500, required=False)
    production_client_id = forms.CharField(label="Production OAuth client id", max_length=200, required=False)
    production_client_secret = forms.CharField(
        label="Production OAuth client secret",
        max_length=200,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="used from go-live on; leave blank to keep the one stored",
    )
    auth_method = forms.ChoiceField(label="How it authenticates", choices=CarrierAuthMethod.choices)
    sandbox_ca_pem = forms.CharField(
        label="Sandbox server CA or SPIFFE trust bundle (PEM)",
        required=False,
        max_length=64_000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="only when the sandbox's server certificate is not from a public CA; required with SVIDs",
    )
    sandbox_spiffe_id = forms.CharField(
        label="Sandbox SPIFFE ID", max_length=300, required=False, help_text="with SVIDs: spiffe://<domain>/<path>"
    )
    telemetry_rate_hz = forms.FloatField(
        label="Telemetry rate (samples a second per vehicle)",
        min_value=0.1,
        max_value=10.0,
        initial=1.0,
        required=False,
        help_text="what your vehicles send; certification measures it (blank keeps the one stored)",
    )

    def clean_scac(self) -> str:
        return str(self.cleaned_data.get("scac") or "").strip().upper()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for field in (
            "usdot_number",
            "mc_number",
            "contact_phone",
            "odd_hours",
            "sandbox_api_url",
            "sandbox_spiffe_id",
        ):
            if isinstance(data.get(field), str):
                data[field] = data[field].strip()
        if isinstance(data.get("production_api_url"), str):
            data["production_api_url"] = data["production_api_url"].strip()
        if self.errors:
            return data
        for field, message in services.profile_errors(data).items():
            self.add_error(field, message)
        return data


class DocumentForm(forms.Form):
    kind = forms.ChoiceField(label="Document", choices=ComplianceKind.choices)
    state = forms.CharField(label="State (permits)", max_length=2, required=False, help_text="two letters, e.g. TX")
    file = forms.FileField(label="PDF file")
    insurer = forms.CharField(label="Insurer", max_length=120, required=False)
    policy_number = forms.CharField(label="Policy number", max_length=60, required=False)
    auto_liability_usd = forms.DecimalField(
        label="Auto liability (USD)", max_digits=12, decimal_places=2, min_value=0, required=False
    )
    cargo_usd = forms.DecimalField(label="Cargo (USD)", max_digits=12, decimal_places=2, min_value=0, required=False)
    effective_on = forms.DateField(label="Effective from", help_text="YYYY-MM-DD")
    expires_on = forms.DateField(label="Expires on", help_text="YYYY-MM-DD, the last day it is valid")

    def clean_state(self) -> str:
        return str(self.cleaned_data.get("state") or "").strip().upper()

    def facts(self) -> compliance.DocumentFacts | None:
        """The upload as facts, or None after adding the errors the checks found to the form."""
        data = self.cleaned_data
        upload = data["file"]
        limit = settings.COMPLIANCE_DOCUMENT_MAX_BYTES
        if upload.size > limit:
            self.add_error("file", f"The file is {upload.size:,} bytes; the most is {limit:,} bytes.")
            return None
        facts = compliance.DocumentFacts(
            kind=data["kind"],
            state=data["state"],
            filename=str(upload.name or "document.pdf"),
            content=upload.read(),
            insurer=data.get("insurer") or "",
            policy_number=data.get("policy_number") or "",
            auto_liability_usd=data.get("auto_liability_usd"),
            cargo_usd=data.get("cargo_usd"),
            effective_on=data["effective_on"],
            expires_on=data["expires_on"],
        )
        errors = compliance.document_errors(facts, today=timezone.localdate())
        for field, message in errors.items():
            self.add_error(field if field in self.fields else None, message)
        return None if errors else facts


def _invitation_url(request: HttpRequest, token: str) -> str:
    path = reverse("onboarding:accept", args=[token])
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{path}"


def _mail_invitation(*, email: str, legal_name: str, link: str, hours: int) -> str:
    """Send the invitation; the error in words when the mail could not be handed over, else ''."""
    try:
        send_mail(
            subject=f"{legal_name}: your invitation to the carrier portal",
            message=(
                f"You are invited to set up {legal_name} as a carrier.\n\n"
                f"Open this link within {hours} hours to create your portal account (it works once):\n{link}\n\n"
                "You will set up a one-time code app when you first sign in."
            ),
            from_email=None,
            recipient_list=[email],
        )
    except OSError as exc:
        return str(exc) or exc.__class__.__name__
    return ""


@console_permission_required(MANAGE_CARRIERS)
def onboarding_list(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.carrier_invite(
                legal_name=form.cleaned_data["legal_name"],
                email=form.cleaned_data["email"],
                actor=Actor.for_user(request.user),
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            link = _invitation_url(request, issued.token)
            mail_error = _mail_invitation(
                email=issued.invitation.email,
                legal_name=issued.invitation.carrier.name,
                link=link,
                hours=settings.ONBOARDING_INVITATION_HOURS,
            )
            return render(
                request,
                "onboarding/invited.html",
                {"invitation": issued.invitation, "link": link, "mail_error": mail_error, "nav": "carriers"},
            )
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "onboarding/list.html",
        {
            "form": form,
            "carriers": [(c, golive.golive_blockers(c.pk)) for c in selectors.onboarding_carriers()],
            "invitation_hours": settings.ONBOARDING_INVITATION_HOURS,
            "now": timezone.now(),
            "nav": "carriers",
        },
        status=status,
    )


@require_POST
@console_permission_required(MANAGE_CARRIERS)
def invitation_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        services.invitation_revoke(invitation_id=pk, actor=Actor.for_user(request.user))
    except DomainError as exc:
        messages.error(request, exc.message)
    except CarrierInvitation.DoesNotExist as exc:
        raise Http404("no such invitation") from exc
    else:
        messages.success(request, "The invitation was withdrawn; its link no longer works.")
    return redirect("onboarding:list")


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Open to whoever holds the link: one portal account, then the sign-in with a one-time code set-up."""
    invitation = selectors.invitation_by_token(token)
    problem = services.invitation_problem(invitation)
    if problem is not None:
        return render(request, "onboarding/accept.html", {"problem": problem}, status=410 if invitation else 404)
    assert invitation is not None
    form = AcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.invitation_accept(
                token=token, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, "Your account is ready. Sign in; you will then set up your one-time code app.")
            return redirect(f"{reverse('two_factor:login')}?next={reverse('onboarding:portal')}")
    status = 400 if request.method == "POST" else 200
    return render(request, "onboarding/accept.html", {"form": form, "invitation": invitation}, status=status)


def _member(request: HttpRequest) -> CarrierMember:
    member = selectors.member_of(request.user)
    if member is None:
        raise Http404("not a carrier portal member")
    return member


def _portal_page(
    request: HttpRequest,
    member: CarrierMember,
    *,
    form: ProfileForm | None = None,
    document_form: DocumentForm | None = None,
    status: int = 200,
) -> HttpResponse:
    profile = selectors.carrier_profile(member.carrier_id)
    return render(
        request,
        "onboarding/portal.html",
        {
            "member": member,
            "carrier": member.carrier,
            "profile": profile,
            "form": form or ProfileForm(initial=selectors.profile_initial(profile)),
            "document_form": document_form or DocumentForm(),
            "documents": selectors.carrier_documents(member.carrier_id),
            "runs": selectors.certification_runs(member.carrier_id)[:10],
            "blockers": golive.golive_blockers(member.carrier_id),
            "current": {d.pk for d in compliance.current_documents(member.carrier_id)},
            "today": timezone.localdate(),
            "max_bytes": settings.COMPLIANCE_DOCUMENT_MAX_BYTES,
        },
        status=status,
    )


def portal(request: HttpRequest) -> HttpResponse:
    """The carrier's own page: its status, profile and compliance documents (the 2FA gate has already run)."""
    member = _member(request)
    if request.method != "POST":
        return _portal_page(request, member)
    form = ProfileForm(request.POST)
    if form.is_valid():
        values = {f: form.cleaned_data[f] for f in services.PROFILE_FIELDS}
        if values["telemetry_rate_hz"] is None:
            del values["telemetry_rate_hz"]
        for secret in services.SECRET_FIELDS:
            values[secret] = form.cleaned_data[secret]
        try:
            services.profile_update(carrier_id=member.carrier_id, values=values, actor=Actor.for_user(request.user))
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, "Profile saved.")
            return redirect("onboarding:portal")
    return _portal_page(request, member, form=form, status=400)


@require_POST
def sandbox_credentials(request: HttpRequest) -> HttpResponse:
    """Issue (or replace) the sandbox's credentials for our API; the secrets are shown on this answer only."""
    member = _member(request)
    try:
        issued = services.sandbox_credentials_issue(carrier_id=member.carrier_id, actor=Actor.for_user(request.user))
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("onboarding:portal")
    base = str(settings.PARTNER_BASE_URL or settings.PUBLIC_BASE_URL).rstrip("/")
    answer = render(
        request,
        "onboarding/sandbox_credentials.html",
        {"carrier": member.carrier, "issued": issued, "token_url": f"{base}/oauth2/token"},
    )
    answer["Cache-Control"] = "no-store"
    return answer


@require_POST
def document_upload(request: HttpRequest) -> HttpResponse:
    member = _member(request)
    form = DocumentForm(request.POST, request.FILES)
    facts = form.facts() if form.is_valid() else None
    if facts is not None:
        try:
            compliance.document_add(carrier_id=member.carrier_id, facts=facts, actor=Actor.for_user(request.user))
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            golive.onboarding_reason_refresh(member.carrier_id)
            messages.success(request, f"{ComplianceKind(facts.kind).label} accepted.")
            return redirect("onboarding:portal")
    return _portal_page(request, member, document_form=form, status=400)


def document_download(request: HttpRequest, pk: int) -> HttpResponse:
    """A member's own document back, as the PDF it was uploaded as (never rendered inline)."""
    member = _member(request)
    document = selectors.carrier_document(member.carrier_id, pk)
    if document is None:
        raise Http404("no such document")
    answer = HttpResponse(bytes(document.content), content_type="application/pdf")
    answer["Content-Disposition"] = f'attachment; filename="compliance-{document.pk}.pdf"'
    answer["X-Content-Type-Options"] = "nosniff"
    return answer


def _start_certification(request: HttpRequest, carrier_id: int) -> CertificationRun | None:
    try:
        run = certification.certification_start(carrier_id=carrier_id, actor=Actor.for_user(request.user))
    except DomainError as exc:
        messages.error(request, exc.message)
        return None
    transaction.on_commit(lambda: tasks.certification_run.delay(run.pk))
    return run


@require_POST
def certification_start(request: HttpRequest) -> HttpResponse:
    member = _member(request)
    run = _start_certification(request, member.carrier_id)
    if run is None:
        return redirect("onboarding:portal")
    return redirect("onboarding:certification", pk=run.pk)


def _run_page(request: HttpRequest, run: CertificationRun) -> HttpResponse:
    return render(
        request,
        "onboarding/certification.html",
        {
            "run": run,
            "carrier": run.carrier,
            "done": sum(1 for c in run.checks if c["status"] != "pending"),
            "live": run.status in (CertificationStatus.QUEUED, CertificationStatus.RUNNING),
            "portal": selectors.member_of(request.user) is not None,
            "nav": "carriers",
        },
    )


def _run_of(request: HttpRequest, pk: int, *, portal: bool) -> CertificationRun:
    """A run by id: in the portal only one of the member's own carrier; 404 otherwise."""
    run = selectors.certification_run(_member(request).carrier_id if portal else None, pk)
    if run is None:
        raise Http404("no such run")
    return run


def certification_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A run of the member's own carrier, live while it runs (the page reloads itself)."""
    return _run_page(request, _run_of(request, pk, portal=True))


@console_permission_required(MANAGE_CARRIERS)
def console_certification(request: HttpRequest, pk: int) -> HttpResponse:
    return _run_page(request, _run_of(request, pk, portal=False))


@require_POST
@console_permission_required(MANAGE_CARRIERS)
def console_certification_start(request: HttpRequest, carrier_pk: int) -> HttpResponse:
    run = _start_certification(request, carrier_pk)
    if run is None:
        return redirect("onboarding:list")
    return redirect("onboarding:console_certification", pk=run.pk)


def _certificate(request: HttpRequest, run: CertificationRun) -> HttpResponse:
    """The run's signed certificate as an evidence bundle (verifies offline with tools/verify_evidence.py)."""
    try:
        bundle = evidence_services.evidence_bundle_for_certification(run.pk)
    except Conflict as exc:
        messages.error(request, f"The certificate is not available yet: {exc}")
        return redirect(request.path.rsplit("certificate.json", 1)[0])
    answer = HttpResponse(bundle, content_type="application/json")
    answer["Content-Disposition"] = f'attachment; filename="certificate-{run.carrier.slug}-run-{run.pk}.json"'
    return answer


def certification_certificate(request: HttpRequest, pk: int) -> HttpResponse:
    return _certificate(request, _run_of(request, pk, portal=True))


@console_permission_required(MANAGE_CARRIERS)
def console_certification_certificate(request: HttpRequest, pk: int) -> HttpResponse:
    return _certificate(request, _run_of(request, pk, portal=False))


@require_POST
@console_permission_required(MANAGE_CARRIERS)
def carrier_go_live(request: HttpRequest, carrier_pk: int) -> HttpResponse:
    try:
        carrier = golive.carrier_go_live(carrier_id=carrier_pk, actor=Actor.for_user(request.user))
    except DomainError as exc:
        messages.error(request, exc.message)
    except Carrier.DoesNotExist as exc:
        raise Http404("no such carrier") from exc
    else:
        messages.success(request, f"{carrier.name} is live: it is offered tenders from now on.")
    return redirect("onboarding:list")


@console_permission_required(VIEW_CONSOLE)
def marketplace(request: HttpRequest) -> HttpResponse:
    """Certified carriers side by side for a lane (``?origin=TX&destination=OK``)."""
    origin = request.GET.get("origin", "").strip().upper()[:2]
    destination = request.GET.get("destination", "").strip().upper()[:2]
    error = market.lane_error(origin, destination)
    rows = market.market("" if error else origin, "" if error else destination)
    return render(
        request,
        "onboarding/marketplace.html",
        {"rows": rows, "origin": origin, "destination": destination, "error": error, "nav": "carriers"},
        status=400 if error else 200,
    )
