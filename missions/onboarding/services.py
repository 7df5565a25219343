"""Onboarding writes: invite a carrier, accept an invitation (a portal account), keep the carrier's profile.

Each runs in one transaction and records its event; an invitation that fails
half-way leaves nothing behind (no carrier without its invitation, no account
without its membership).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from missions.choices import CarrierKind, CarrierStatus
from missions.events import Actor, event_record
from missions.identity.services import bundle_parse
from missions.models import Carrier, CarrierInvitation, CarrierMember, CarrierProfile
from missions.models.onboarding import CarrierAuthMethod
from missions.models.partner import SANDBOX_SCOPES
from missions.partner import services as partner_services
from tms_console.domain import DomainError
from tms_console.egress import EgressRefused, egress_check

TOKEN_BYTES = 32
SCAC_RE = re.compile(r"^[A-Z]{2,4}$")
DIGITS_RE = re.compile(r"^[0-9]{1,8}$")
HOURS_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: CarrierInvitation
    token: str  # shown once, mailed; only its digest is stored


def _unique_slug(legal_name: str) -> str:
    base = slugify(legal_name)[:50] or "carrier"
    slug, n = base, 2
    while Carrier.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@transaction.atomic
def carrier_invite(*, legal_name: str, email: str, actor: Actor) -> IssuedInvitation:
    """A new carrier, in onboarding (never tendered to), and an invitation for one of its staff."""
    legal_name = " ".join(legal_name.split())
    if not legal_name:
        raise DomainError("Enter the carrier's legal name.", field="legal_name")
    if len(legal_name) > 120:
        raise DomainError("The legal name is longer than 120 characters.", field="legal_name")
    email = email.strip().lower()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise DomainError("Enter a valid email address.", field="email") from exc
    if Carrier.objects.filter(name__iexact=legal_name).exists():
        raise DomainError(f"A carrier named {legal_name!r} exists already.", field="legal_name")
    if actor.user is None:
        raise DomainError("Only a console user can invite a carrier.")
    try:
        with transaction.atomic():
            carrier = Carrier.objects.create(
                name=legal_name,
                slug=_unique_slug(legal_name),
                kind=CarrierKind.AUTONOMOUS,
                status=CarrierStatus.ONBOARDING,
            )
    except IntegrityError as exc:  # the same name created at the same moment
        raise DomainError(f"A carrier named {legal_name!r} exists already.", field="legal_name") from exc
    CarrierProfile.objects.create(carrier=carrier, legal_name=legal_name)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invitation = CarrierInvitation.objects.create(
        carrier=carrier,
        email=email,
        token_sha256=token_digest(token),
        invited_by=actor.user,
        expires_at=timezone.now() + timedelta(hours=settings.ONBOARDING_INVITATION_HOURS),
    )
    carrier.paused_reason = "not live yet: not certified, no SLA contract, no certificate of insurance"
    carrier.save(update_fields=["paused_reason"])
    event_record(
        actor=actor,
        action="carrier.invited",
        subject_type="carrier",
        subject_id=carrier.pk,
        after={"status": carrier.status, "legal_name": legal_name, "invitation_id": invitation.pk},
        data={"email": email, "expires_at": invitation.expires_at.isoformat()},
        carrier=carrier,
    )
    return IssuedInvitation(invitation=invitation, token=token)


def invitation_problem(invitation: CarrierInvitation | None) -> str | None:
    """Why the invitation cannot be used now, in words for the person holding the link; None when it can."""
    if invitation is None:
        return "This invitation link is not valid. Ask the carrier manager who invited you for a new one."
    if invitation.accepted_at is not None:
        return "This invitation has been used already. Sign in with the account created with it."
    if invitation.revoked_at is not None:
        return "This invitation was withdrawn. Ask the carrier manager who invited you for a new one."
    if invitation.expires_at <= timezone.now():
        return "This invitation has expired. Ask the carrier manager who invited you for a new one."
    return None


@transaction.atomic
def invitation_accept(*, token: str, username: str, password: str) -> CarrierMember:
    """The portal account of the invitation's holder; the invitation cannot be used again."""
    invitation = (
        CarrierInvitation.objects.select_for_update().select_related("carrier").filter(token_sha256=token_digest(token))
    ).first()
    problem = invitation_problem(invitation)
    if problem is not None:
        raise DomainError(problem)
    assert invitation is not None
    username = username.strip()
    if not re.fullmatch(r"[\w.@+-]{3,150}", username):
        raise DomainError("Choose a user name of 3 to 150 letters, digits or . @ + - _", field="username")
    if User.objects.filter(username__iexact=username).exists():
        raise DomainError("That user name is taken; choose another.", field="username")
    candidate = User(username=username, email=invitation.email)
    try:
        validate_password(password, candidate)
    except ValidationError as exc:
        raise DomainError(" ".join(exc.messages), field="password") from exc
    user = User.objects.create_user(username=username, email=invitation.email, password=password)
    member = CarrierMember.objects.create(user=user, carrier=invitation.carrier, invitation=invitation)
    invitation.accepted_at, invitation.accepted_by = timezone.now(), user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    event_record(
        actor=Actor.for_user(user),
        action="carrier.invitation_accepted",
        subject_type="carrier",
        subject_id=invitation.carrier_id,
        after={"invitation_id": invitation.pk, "username": username},
        carrier=invitation.carrier,
    )
    return member


@transaction.atomic
def invitation_revoke(*, invitation_id: int, actor: Actor) -> CarrierInvitation:
    invitation = CarrierInvitation.objects.select_for_update().get(pk=invitation_id)
    if invitation.accepted_at is not None:
        raise DomainError("This invitation has been used already; it cannot be withdrawn.")
    if invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        event_record(
            actor=actor,
            action="carrier.invitation_revoked",
            subject_type="carrier",
            subject_id=invitation.carrier_id,
            after={"invitation_id": invitation.pk},
            carrier=invitation.carrier,
        )
    return invitation


PROFILE_FIELDS = (
    "legal_name",
    "scac",
    "usdot_number",
    "mc_number",
    "contact_name",
    "contact_email",
    "contact_phone",
    "odd_hours",
    "odd_max_wind_kph",
    "odd_min_visibility_m",
    "odd_snow_allowed",
    "sandbox_api_url",
    "sandbox_client_id",
    "production_api_url",
    "production_client_id",
    "auth_method",
    "sandbox_ca_pem",
    "sandbox_spiffe_id",
    "telemetry_rate_hz",
)
SPIFFE_ID_RE = re.compile(r"^spiffe://[a-z0-9._-]{1,255}(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)+$")
TELEMETRY_RATE_RANGE = (0.1, 10.0)


SECRET_FIELDS = ("sandbox_client_secret", "production_client_secret")


def profile_errors(values: dict[str, Any]) -> dict[str, str]:
    """Field errors of a profile as the portal submits it (already typed by the form)."""
    errors: dict[str, str] = {}
    if not str(values.get("legal_name") or "").strip():
        errors["legal_name"] = "Enter the carrier's legal name."
    scac = values.get("scac") or ""
    if scac and not SCAC_RE.match(scac):
        errors["scac"] = "A SCAC is 2 to 4 capital letters (A-Z)."
    for field, label in (("usdot_number", "A USDOT number"), ("mc_number", "An MC number")):
        value = values.get(field) or ""
        if value and not DIGITS_RE.match(value):
            errors[field] = f"{label} is 1 to 8 digits, without a prefix."
    hours = values.get("odd_hours") or ""
    if not HOURS_RE.match(hours):
        errors["odd_hours"] = "Operating hours read HH:MM-HH:MM, e.g. 06:00-22:00 (00:00-24:00: around the clock)."
    for field in ("sandbox_api_url", "production_api_url"):
        url = values.get(field) or ""
        if url:
            try:
                egress_check(url)
            except EgressRefused as exc:
                errors[field] = str(exc)
    errors.update(_sandbox_identity_errors(values))
    rate = values.get("telemetry_rate_hz")
    low, high = TELEMETRY_RATE_RANGE
    if rate is not None and not low <= float(rate) <= high:
        errors["telemetry_rate_hz"] = f"The telemetry rate is from {low:g} to {high:g} samples a second."
    return errors


def _sandbox_identity_errors(values: dict[str, Any]) -> dict[str, str]:
    """How the sandbox proves who it is: a CA or SPIFFE bundle that parses, and an SVID's SPIFFE ID."""
    errors: dict[str, str] = {}
    pem = str(values.get("sandbox_ca_pem") or "").strip()
    if pem:
        try:
            bundle_parse(pem)
        except DomainError as exc:
            errors["sandbox_ca_pem"] = str(exc)
    spiffe_id = str(values.get("sandbox_spiffe_id") or "")
    if spiffe_id and not SPIFFE_ID_RE.match(spiffe_id):
        errors["sandbox_spiffe_id"] = (
            "A SPIFFE ID reads spiffe://<trust domain>/<path>, e.g. spiffe://acme.example/sandbox."
        )
    if values.get("auth_method") == CarrierAuthMethod.SVID:
        if not spiffe_id:
            errors.setdefault("sandbox_spiffe_id", "With SPIFFE SVIDs, give the SPIFFE ID of the sandbox's server.")
        if not pem:
            errors.setdefault(
                "sandbox_ca_pem", "With SPIFFE SVIDs, paste the trust bundle the sandbox's SVID chains to."
            )
    return errors


@transaction.atomic
def profile_update(*, carrier_id: int, values: dict[str, Any], actor: Actor) -> CarrierProfile:
    errors = profile_errors(values)
    if errors:
        field, message = next(iter(errors.items()))
        raise DomainError(message, field=field)
    profile, _ = CarrierProfile.objects.select_for_update().get_or_create(
        carrier_id=carrier_id, defaults={"legal_name": str(values.get("legal_name") or "")}
    )
    before = {f: getattr(profile, f) for f in PROFILE_FIELDS}
    for field in PROFILE_FIELDS:
        if field in values:
            setattr(profile, field, values[field])
    after = {f: getattr(profile, f) for f in PROFILE_FIELDS}
    changed = sorted(f for f in PROFILE_FIELDS if before[f] != after[f])
    # Secrets are write-only: a blank one keeps the stored secret; the event says only that it changed.
    for field in SECRET_FIELDS:
        secret = str(values.get(field) or "")
        if secret and secret != getattr(profile, field):
            setattr(profile, field, secret)
            changed.append(field)
    if not changed:
        return profile
    profile.save()
    masked = dict.fromkeys(SECRET_FIELDS, "(changed)")
    event_record(
        actor=actor,
        action="carrier.profile_updated",
        subject_type="carrier",
        subject_id=carrier_id,
        before={f: masked.get(f, before.get(f)) for f in changed},
        after={f: masked.get(f, after.get(f)) for f in changed},
        carrier=profile.carrier,
    )
    return profile


@dataclass(frozen=True)
class SandboxCredentials:
    """The sandbox's credentials for our API, in the only value that holds the client secret in clear."""

    client_id: str
    client_secret: str
    webhook_secret: str


@transaction.atomic
def sandbox_credentials_issue(*, carrier_id: int, actor: Actor) -> SandboxCredentials:
    """Issue (or replace) the carrier sandbox's credentials for our API: an OAuth client that can only
    reach its certification runs' receivers, and the secret its test webhooks are signed with.

    Replacing them deletes the old client (its tokens die with it); the client secret is shown once.
    """
    profile = CarrierProfile.objects.select_for_update().select_related("carrier").get(carrier_id=carrier_id)
    old = profile.sandbox_partner_client
    issued = partner_services.partner_client_create(
        carrier_id=carrier_id, name=f"{profile.carrier.name} sandbox", scopes=list(SANDBOX_SCOPES), actor=actor
    )
    profile.sandbox_partner_client = issued.client
    profile.sandbox_webhook_secret = partner_services.new_webhook_secret()
    profile.save(update_fields=["sandbox_partner_client", "sandbox_webhook_secret", "updated_at"])
    if old is not None:
        old.application.delete()  # cascades to the client and its tokens
    event_record(
        actor=actor,
        action="carrier.sandbox_credentials_issued",
        subject_type="carrier",
        subject_id=carrier_id,
        after={"client_id": issued.client_id, "replaced": old is not None},
        carrier=profile.carrier,
    )
    return SandboxCredentials(
        client_id=issued.client_id, client_secret=issued.client_secret, webhook_secret=profile.sandbox_webhook_secret
    )
