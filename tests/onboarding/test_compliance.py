"""Compliance documents: checked on upload, warned about before expiry, tendering paused after and resumed."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from missions.choices import CarrierStatus
from missions.events import Actor
from missions.models import AuditEvent, Carrier, ComplianceDocument
from missions.onboarding import compliance
from missions.selectors import carrier_fit
from missions.services import carrier_pause
from tests.conftest import make_user, verified_client
from tests.factories import ShipmentFactory
from tests.onboarding.test_portal import _accept, _invite, _portal_client
from tms_console.roles import CARRIER_MANAGER

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
TODAY = date(2027, 3, 1)


def _at(day: date) -> Any:
    return time_machine.travel(datetime(day.year, day.month, day.day, 9, 0), tick=False)


@pytest.fixture
def manager(db: Any) -> User:
    user = make_user("carol", CARRIER_MANAGER)
    user.email = "carol@tms.example"
    user.save()
    return user


def member(username: str = "lonestar-ops") -> Client:
    """The portal member signed in (with their one-time code) at the time of the call."""
    return verified_client(User.objects.get(username=username))


@pytest.fixture
def carrier(manager: User) -> Carrier:
    """A live carrier with one portal member (ops@lonestar.example) who has set up their code."""
    with _at(TODAY):
        _accept(_invite(verified_client(manager)))
        _portal_client()
    carrier = Carrier.objects.get(name="Lonestar Autonomy LLC")
    carrier.status = CarrierStatus.ACTIVE  # as after go-live
    carrier.save(update_fields=["status"])
    return carrier


def _insurance(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "kind": "insurance",
        "file": SimpleUploadedFile("coi.pdf", PDF, content_type="application/pdf"),
        "insurer": "Great Plains Mutual",
        "policy_number": "GPM-2027-0042",
        "auto_liability_usd": "1000000",
        "cargo_usd": "250000",
        "effective_on": "2027-01-01",
        "expires_on": "2027-04-30",
    }
    values.update(overrides)
    return values


def test_a_valid_certificate_is_kept_with_its_digest_and_given_back_only_to_its_carrier(
    carrier: Carrier, manager: User
) -> None:
    with _at(TODAY):
        client = member()
        answer = client.post("/portal/documents/", _insurance())

    assert answer.status_code == 302
    document = ComplianceDocument.objects.get(carrier=carrier)
    assert bytes(document.content) == PDF and document.size == len(PDF)
    assert document.sha256 == hashlib.sha256(PDF).hexdigest()
    event = AuditEvent.objects.get(action="carrier.compliance_document_added")
    assert event.after is not None and event.after["sha256"] == document.sha256
    with _at(TODAY):
        page = client.get("/portal/").content.decode()
        assert "Great Plains Mutual" in page and "current" in page
        download = client.get(f"/portal/documents/{document.pk}/")
        assert download.status_code == 200 and download.content == PDF
        assert download["Content-Disposition"].startswith("attachment;")
        # Another carrier's member cannot read it, nor can a console user through the portal.
        _accept(_invite(verified_client(manager), name="Other Carrier", email="o@o.example"), username="other-ops")
        assert _portal_client("other-ops").get(f"/portal/documents/{document.pk}/").status_code == 404
        assert verified_client(manager).get(f"/portal/documents/{document.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"file": SimpleUploadedFile("coi.pdf", b"hello, not a pdf")}, "not a PDF"),
        ({"file": SimpleUploadedFile("coi.pdf", PDF[:-7])}, "cut short"),
        ({"file": SimpleUploadedFile("coi.pdf", PDF + b"x" * 5000)}, "the most is 4,096 bytes"),
        ({"file": SimpleUploadedFile("coi.pdf", b"")}, "The submitted file is empty"),
        ({"expires_on": "2027-02-01"}, "expired on 2027-02-01"),
        ({"effective_on": "2027-05-01"}, "expires before it takes effect"),
        ({"auto_liability_usd": "750000"}, "at least USD 1,000,000"),
        ({"cargo_usd": ""}, "at least USD 100,000"),
        ({"insurer": ""}, "Enter the insurer"),
        ({"kind": "permit", "state": "T"}, "two-letter code"),
        ({"kind": "permit", "state": "Texas"}, "at most 2 characters"),
        ({"expires_on": "30/04/2027"}, "Enter a valid date"),
    ],
)
def test_a_bad_upload_is_refused_whole_with_the_reason(
    carrier: Carrier, settings: Any, overrides: dict[str, Any], error: str
) -> None:
    settings.COMPLIANCE_DOCUMENT_MAX_BYTES = 4096
    with _at(TODAY):
        answer = member().post("/portal/documents/", _insurance(**overrides))

    assert answer.status_code == 400 and error in answer.content.decode()
    assert not ComplianceDocument.objects.exists()
    assert not AuditEvent.objects.filter(action="carrier.compliance_document_added").exists()


def test_a_permit_names_its_state(carrier: Carrier) -> None:
    with _at(TODAY):
        answer = member().post("/portal/documents/", _insurance(kind="permit", state="tx", insurer="", cargo_usd=""))

    assert answer.status_code == 302
    assert ComplianceDocument.objects.get(carrier=carrier).state == "TX"


def test_expiry_warns_twice_then_pauses_tendering_and_a_current_certificate_resumes_it(
    carrier: Carrier, manager: User
) -> None:
    with _at(TODAY):
        assert member().post("/portal/documents/", _insurance()).status_code == 302  # expires 2027-04-30
    mail.outbox.clear()

    with _at(date(2027, 3, 31)):  # 30 days left
        assert compliance.compliance_watch().as_dict() == {"warned": 1, "paused": 0}
        assert compliance.compliance_watch().as_dict() == {"warned": 0, "paused": 0}  # once only
    assert len(mail.outbox) == 1
    assert set(mail.outbox[0].to) == {"ops@lonestar.example", "carol@tms.example"}
    assert "expires in 30 days" in mail.outbox[0].subject
    with _at(date(2027, 4, 23)):  # 7 days left
        assert compliance.compliance_watch().warned == 1
    with _at(date(2027, 4, 30)):  # the last valid day
        assert compliance.compliance_watch().as_dict() == {"warned": 0, "paused": 0}
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.ACTIVE
    assert [e.after["days_left"] for e in AuditEvent.objects.filter(action="carrier.compliance_expiring")] == [30, 7]

    with _at(date(2027, 5, 1)):
        assert compliance.compliance_watch().paused == 1
        assert compliance.compliance_watch().paused == 0
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.PAUSED
    assert carrier.paused_reason.startswith("Compliance: Certificate of insurance expired on 2027-04-30")
    pause = AuditEvent.objects.get(action="carrier.paused")
    assert pause.actor_label == "compliance watch"
    assert not carrier_fit(carrier=carrier, shipment=ShipmentFactory.build()).eligible
    with _at(date(2027, 5, 1)):
        client = member()
        assert "Tendering paused" in client.get("/portal/").content.decode()

        renewed = client.post("/portal/documents/", _insurance(effective_on="2027-05-01", expires_on="2028-04-30"))

    assert renewed.status_code == 302
    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.ACTIVE and carrier.paused_reason == ""
    assert AuditEvent.objects.get(action="carrier.resumed").actor_label == "compliance watch"
    with _at(date(2027, 5, 2)):
        assert compliance.compliance_watch().as_dict() == {"warned": 0, "paused": 0}


def test_an_upload_does_not_resume_a_pause_a_person_made(carrier: Carrier, manager: User) -> None:
    with _at(TODAY):
        member().post("/portal/documents/", _insurance())
    with _at(date(2027, 5, 1)):
        compliance.compliance_watch()
    carrier_pause(carrier_id=carrier.pk, actor=Actor.for_user(manager), reason="Safety review after an incident")

    with _at(date(2027, 5, 1)):
        member().post("/portal/documents/", _insurance(effective_on="2027-05-01", expires_on="2028-04-30"))

    carrier.refresh_from_db()
    assert carrier.status == CarrierStatus.PAUSED and carrier.paused_reason == "Safety review after an incident"


def test_a_carrier_still_onboarding_is_warned_but_not_paused(manager: User) -> None:
    with _at(TODAY):
        _accept(_invite(verified_client(manager)))
        _portal_client().post("/portal/documents/", _insurance(expires_on="2027-03-20"))
    carrier = Carrier.objects.get(name="Lonestar Autonomy LLC")

    with _at(date(2027, 3, 10)):
        warned = compliance.compliance_watch()
    with _at(date(2027, 3, 25)):
        expired = compliance.compliance_watch()

    carrier.refresh_from_db()
    assert warned.as_dict() == {"warned": 1, "paused": 0} and expired.as_dict() == {"warned": 0, "paused": 0}
    assert carrier.status == CarrierStatus.ONBOARDING


def test_a_200_mb_upload_is_refused_by_the_server_before_it_is_read() -> None:
    import io
    import json

    from django.core.handlers.wsgi import WSGIHandler

    from tms_console.request_body import BodyLimitWSGI

    # The servers' body limit in front of Django, as tms_console.wsgi assembles it (importing that module would
    # set up the process's tracing).
    application = BodyLimitWSGI(WSGIHandler())

    answered: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/portal/documents/",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "multipart/form-data; boundary=x",
        "CONTENT_LENGTH": str(200 * 1024 * 1024),
    }

    body = b"".join(application(environ, lambda status, headers, exc_info=None: answered.append(status)))

    assert answered == ["413 Request Entity Too Large"]
    assert "The request body is 209715200 bytes" in json.loads(body)["detail"]
    assert not ComplianceDocument.objects.exists()
