"""The inbound endpoint (scoped partner token, X12 in, 997 or problem+json out) and the console pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from rest_framework.test import APIClient

from missions.edi import transactions as tx
from missions.models import AuditEvent, Carrier, Tender
from missions.models.edi import EdiInterchange
from tests.conftest import verified_client
from tests.edi.test_services import answer_990, tender_over_edi
from tests.partner.conftest import api_client, fetch_token, issue_client

pytestmark = pytest.mark.django_db
URL = "/api/v1/edi/interchanges"


def edi_api(carrier: Carrier, scopes: str = "edi:write") -> APIClient:
    return api_client(fetch_token(issue_client(carrier, scopes), scopes)["access_token"])


def test_carrier_posts_a_990_and_gets_the_997(edi_carrier: Carrier, django_capture_on_commit_callbacks: Any) -> None:
    tender = tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    client = edi_api(edi_carrier)
    body = answer_990(tender, "A", 601)
    response = client.post(URL, data=body, content_type="application/edi-x12")
    assert response.status_code == 200 and response["Content-Type"] == "application/edi-x12"
    assert "AK1*GF*601~" in response.content.decode() and "AK9*A*1*1*1~" in response.content.decode()
    tender.refresh_from_db()
    assert tender.status == "accepted"
    again = client.post(URL, data=body, content_type="application/edi-x12")
    assert again.status_code == 200 and again.content == response.content  # the first 997, nothing applied twice
    late = client.post(URL, data=answer_990(tender, "A", 602), content_type="application/edi-x12")
    assert late.status_code == 422 and late["Content-Type"] == "application/problem+json"
    problem = late.json()
    assert problem["type"].endswith("edi-rejected") and "segment B1 (position 4), element 2" in problem["detail"]
    assert "AK9*R*1*1*0~" in problem["acknowledgement"]


def test_endpoint_refusals_are_problems(edi_carrier: Carrier) -> None:
    client = edi_api(edi_carrier)
    garbage = client.post(URL, data="hello", content_type="application/edi-x12")
    assert garbage.status_code == 422 and garbage.json()["type"].endswith("edi-unreadable")
    assert "ISA" in garbage.json()["detail"]
    json_body = client.post(URL, data={"a": 1}, format="json")
    assert json_body.status_code == 415 and json_body["Content-Type"] == "application/problem+json"
    wrong_scope = edi_api(edi_carrier, "tender:write").post(URL, data="ISA", content_type="application/edi-x12")
    assert wrong_scope.status_code == 403 and "edi:write" in wrong_scope.json()["detail"]
    assert APIClient().post(URL, data="ISA", content_type="application/edi-x12").status_code == 401


def test_other_carrier_cannot_speak_for_the_edi_carrier(edi_carrier: Carrier, carrier_a: Carrier) -> None:
    body = tx.tender_response_segments(tx.TenderResponse("RRFL", "TND-1", "20250101", "A"))
    from tests.edi.test_services import carrier_interchange

    response = edi_api(carrier_a).post(
        URL, data=carrier_interchange([("990", body)], "GF", 603), content_type="application/edi-x12"
    )
    assert response.status_code == 422
    assert any("not the authenticated carrier" in e["detail"] for e in response.json()["errors"])


def test_console_lists_interchanges_and_resends(
    edi_carrier: Carrier, dispatcher: User, readonly: User, django_capture_on_commit_callbacks: Any
) -> None:
    empty = verified_client(readonly).get(reverse("edi:list"))
    assert empty.status_code == 200 and b"No interchanges yet" in empty.content
    tender_over_edi(edi_carrier, django_capture_on_commit_callbacks)
    record = EdiInterchange.objects.get(transaction_types="204")
    page = verified_client(readonly).get(reverse("edi:list"))
    assert page.status_code == 200 and record.control_number.encode() in page.content
    assert b"Awaiting 997" in page.content and b"REDRIVER" in page.content
    detail = verified_client(readonly).get(reverse("edi:detail", args=[record.pk]))
    assert b"Send again" not in detail.content  # read-only role: no resend button
    assert verified_client(readonly).post(reverse("edi:resend", args=[record.pk])).status_code == 403
    client = verified_client(dispatcher)
    client.handler.enforce_csrf_checks = True
    assert client.post(reverse("edi:resend", args=[record.pk])).status_code == 403  # no CSRF token
    client.handler.enforce_csrf_checks = False
    assert client.post(reverse("edi:resend", args=[record.pk])).status_code == 302
    assert AuditEvent.objects.filter(
        action="edi.interchange_resent", subject_id=record.pk, actor_label="dispatcher"
    ).exists()
    assert Tender.objects.count() == 1


def test_console_pages_need_a_verified_login(edi_carrier: Carrier, dispatcher: User) -> None:
    from django.test import Client

    plain = Client()
    plain.force_login(dispatcher)  # password only, no one-time code
    assert plain.get(reverse("edi:list")).status_code in (302, 403)
