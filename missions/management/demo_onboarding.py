"""The demo's carrier in onboarding: invited, its lead's portal account, a profile, insurance, a contract.

``seed_demo`` makes it through the onboarding services, as a carrier manager
and the carrier's lead would in the browser, so that the demo can go on from
where a real carrier would stand before certification: its sandbox is the
carrier simulator's ``/carriers/prairie-autonomy``, which holds the sandbox
credentials for the console's API the seed registers (both derive them from
``SECRET_KEY``, ``tms_console.demo.demo_sandbox_credentials``). Running the
certification from the portal (or the console's onboarding page) passes; then
a carrier manager approves go-live and the carrier gets tenders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from missions.events import Actor
from missions.models import Carrier, CarrierProfile, ComplianceKind, Vehicle
from missions.onboarding import compliance, golive, services
from sla.models import Contract
from tms_console.demo import carrier_sim_client_secret, demo_sandbox_credentials, demo_totp_key

# The smallest document the compliance checks take as a PDF.
DEMO_PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@dataclass(frozen=True)
class DemoOnboarding:
    name: str
    slug: str
    email: str
    lead: str  # the lead's portal user name
    vehicles: tuple[str, ...]
    regions: tuple[str, ...]


DEMO_ONBOARDING = DemoOnboarding(
    name="Prairie Autonomy LLC",
    slug="prairie-autonomy",
    email="integration@prairie-autonomy.example",
    lead="demo-carrier",
    vehicles=("PRA-101", "PRA-102"),
    regions=("TX", "OK", "KS"),
)


def onboarding_seed(*, manager: User, password: str, sim_url: str) -> list[str]:
    """Make the demo's onboarding carrier once (a re-seed only follows the simulator's URL); what was made."""
    spec = DEMO_ONBOARDING
    sandbox_url = f"{sim_url}/carriers/{spec.slug}"
    carrier = Carrier.objects.filter(name=spec.name).first()
    if carrier is not None:
        CarrierProfile.objects.filter(carrier=carrier).exclude(sandbox_api_url=sandbox_url).update(
            sandbox_api_url=sandbox_url, production_api_url=sandbox_url
        )
        return []
    issued = services.carrier_invite(legal_name=spec.name, email=spec.email, actor=Actor.for_user(manager))
    carrier = issued.invitation.carrier
    member = services.invitation_accept(token=issued.token, username=spec.lead, password=password)
    TOTPDevice.objects.create(user=member.user, name="default", key=demo_totp_key(spec.lead), confirmed=True)
    lead = Actor.for_user(member.user)
    # The simulator serves it under /carriers/<slug>: the demo's slug, not one made from the legal name.
    Carrier.objects.filter(pk=carrier.pk).update(
        slug=spec.slug, operating_regions=list(spec.regions), max_autonomy_level=4
    )
    carrier.refresh_from_db()
    services.profile_update(
        carrier_id=carrier.pk,
        values={
            "legal_name": spec.name,
            "scac": "PRAU",
            "usdot_number": "3141592",
            "mc_number": "271828",
            "contact_name": "Demo Carrier Lead",
            "contact_email": spec.email,
            "odd_hours": "05:00-22:00",
            "odd_max_wind_kph": 70,
            "sandbox_client_id": spec.slug,
            "sandbox_client_secret": carrier_sim_client_secret(spec.slug),
            "production_client_id": spec.slug,
            "production_client_secret": carrier_sim_client_secret(spec.slug),
            "auth_method": "oauth_client_credentials",
            "telemetry_rate_hz": 1.0,
        },
        actor=lead,
    )
    # The simulator listens on this machine, which the egress guard refuses unless the operator allows it
    # (``make run`` does, for the processes it starts): the seed writes these URLs without that check.
    CarrierProfile.objects.filter(carrier=carrier).update(sandbox_api_url=sandbox_url, production_api_url=sandbox_url)
    today = timezone.localdate()
    compliance.document_add(
        carrier_id=carrier.pk,
        facts=compliance.DocumentFacts(
            kind=ComplianceKind.INSURANCE,
            filename="prairie-autonomy-coi.pdf",
            content=DEMO_PDF,
            effective_on=today - timedelta(days=30),
            expires_on=today + timedelta(days=335),
            insurer="Great Plains Mutual",
            policy_number="GPM-DEMO-1",
            auto_liability_usd=Decimal("5000000"),
            cargo_usd=Decimal("250000"),
        ),
        actor=lead,
    )
    _sandbox_credentials(carrier, lead)
    for external_id in spec.vehicles:
        Vehicle.objects.get_or_create(carrier=carrier, external_id=external_id)
    Contract.objects.create(
        carrier=carrier,
        version=1,
        effective_from=today.replace(month=1, day=1),
        monthly_fee_usd=Decimal("39000"),
        on_time_target_pct=Decimal("95"),
        credit_schedule=[{"below_pct": 95, "credit_pct": 5}, {"below_pct": 90, "credit_pct": 10}],
    )
    golive.onboarding_reason_refresh(carrier.pk)
    return ["1 onboarding carrier"]


def _sandbox_credentials(carrier: Carrier, lead: Actor) -> None:
    """Issue the sandbox's credentials, then give them the values the simulator's sandbox derives too."""
    services.sandbox_credentials_issue(carrier_id=carrier.pk, actor=lead)
    profile = CarrierProfile.objects.select_related("sandbox_partner_client__application").get(carrier=carrier)
    client_id, client_secret, webhook_secret = demo_sandbox_credentials(carrier.slug)
    assert profile.sandbox_partner_client is not None
    application = profile.sandbox_partner_client.application
    application.client_id, application.client_secret = client_id, client_secret  # hashed on save
    application.save()
    profile.sandbox_webhook_secret = webhook_secret
    profile.save(update_fields=["sandbox_webhook_secret"])
