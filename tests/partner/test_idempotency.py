"""Idempotency-Key rules (draft-ietf-httpapi-idempotency-key-header) on every mutating call."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from missions import services
from missions.models import IdempotencyRecord, Mission, MissionException, Offer, Tender
from missions.models.partner import IdempotencyStatus
from missions.partner.api.authentication import PartnerPrincipal
from missions.partner.api.idempotency import idempotent, request_fingerprint
from missions.partner.services import IssuedClient
from missions.partner.tasks import idempotency_purge
from tests.conftest import require_service
from tests.factories import CarrierFactory, MissionFactory, VehicleFactory
from tests.partner.conftest import assert_problem, fetch_token, issue_client, new_key

EXCEPTION_BODY = {"kind": "lost_comms", "detail": "no uplink for 40 s"}

MUTATING = [
    ("tenders/{tender}/offers", {"kind": "counter", "price_usd": "1500.00"}),
    ("missions/{mission}/status", {"status": "en_route"}),
    ("missions/{mission}/autonomy-mode", {"mode": "supervised"}),
    ("missions/{mission}/vehicle", {"vehicle_external_id": "TRK-1"}),
    ("missions/{mission}/exceptions", EXCEPTION_BODY),
    ("telemetry", None),
    ("telemetry/batch", None),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("template", "body"), MUTATING)
def test_missing_key_is_400_and_nothing_happens(
    api_a: APIClient, tender_a: Tender, mission_a: Mission, template: str, body: Any
) -> None:
    path = "/api/v1/" + template.format(tender=tender_a.pk, mission=mission_a.pk)
    response = api_a.post(path, body or {"events": []}, format="json")
    assert_problem(response, 400, "idempotency-key-missing")
    assert not Offer.objects.exists() and not MissionException.objects.exists()
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "ümlaut"])
def test_malformed_key_is_400(api_a: APIClient, mission_a: Mission, key: str) -> None:
    response = api_a.post(
        f"/api/v1/missions/{mission_a.pk}/exceptions", EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert_problem(response, 400)
    assert not MissionException.objects.exists()


@pytest.mark.django_db
def test_same_key_same_body_replays_and_does_nothing_twice(api_a: APIClient, mission_a: Mission) -> None:
    key = new_key()
    path = f"/api/v1/missions/{mission_a.pk}/exceptions"
    first = api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    second = api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert MissionException.objects.count() == 1


@pytest.mark.django_db
def test_quoted_structured_field_key_is_the_same_key(api_a: APIClient, mission_a: Mission) -> None:
    path = f"/api/v1/missions/{mission_a.pk}/exceptions"
    api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY="abc-123")
    replay = api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY='"abc-123"')
    assert replay["Idempotent-Replayed"] == "true"
    assert MissionException.objects.count() == 1


@pytest.mark.django_db
def test_refusal_is_replayed_too(api_a: APIClient, mission_a: Mission) -> None:
    key, path = new_key(), f"/api/v1/missions/{mission_a.pk}/status"
    first = api_a.post(path, {"status": "completed"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert_problem(first, 409)
    replay = api_a.post(path, {"status": "completed"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert_problem(replay, 409)
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()


@pytest.mark.django_db
def test_same_key_other_body_is_422_and_nothing_happens(api_a: APIClient, mission_a: Mission) -> None:
    key, path = new_key(), f"/api/v1/missions/{mission_a.pk}/exceptions"
    api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    other = api_a.post(path, {"kind": "emergency_stop"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert_problem(other, 422, "idempotency-key-reused")
    assert list(MissionException.objects.values_list("kind", flat=True)) == ["lost_comms"]


@pytest.mark.django_db
def test_same_key_other_path_is_422(api_a: APIClient, mission_a: Mission) -> None:
    key = new_key()
    api_a.post(f"/api/v1/missions/{mission_a.pk}/exceptions", EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    response = api_a.post(
        f"/api/v1/missions/{mission_a.pk}/status", {"status": "en_route"}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert_problem(response, 422)
    mission_a.refresh_from_db()
    assert mission_a.status == "assigned"


@pytest.mark.django_db
def test_in_flight_key_is_409(api_a: APIClient, partner_a: IssuedClient, mission_a: Mission) -> None:
    key, path = new_key(), f"/api/v1/missions/{mission_a.pk}/exceptions"
    body = b'{"kind":"lost_comms","detail":"no uplink for 40 s"}'
    IdempotencyRecord.objects.create(
        client=partner_a.client,
        key=key,
        fingerprint=request_fingerprint("POST", path, body),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    response = api_a.post(path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
    assert_problem(response, 409, "idempotency-key-in-flight")
    assert response["Retry-After"]
    assert not MissionException.objects.exists()


@pytest.mark.django_db
def test_abandoned_in_flight_key_may_be_retried(
    api_a: APIClient, partner_a: IssuedClient, mission_a: Mission, settings: Any
) -> None:
    key, path = new_key(), f"/api/v1/missions/{mission_a.pk}/exceptions"
    body = b'{"kind":"lost_comms"}'
    record = IdempotencyRecord.objects.create(
        client=partner_a.client,
        key=key,
        fingerprint=request_fingerprint("POST", path, body),
        expires_at=timezone.now() + timedelta(hours=1),
    )
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_IN_FLIGHT_TIMEOUT_SECONDS + 1)
    )
    response = api_a.post(path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 201
    assert MissionException.objects.count() == 1


@pytest.mark.django_db
def test_keys_are_scoped_per_client(api_a: APIClient, carrier_a: Any, mission_a: Mission) -> None:
    key, path = new_key(), f"/api/v1/missions/{mission_a.pk}/exceptions"
    other_client = issue_client(carrier_a)
    api_other = APIClient()
    api_other.credentials(HTTP_AUTHORIZATION=f"Bearer {fetch_token(other_client)['access_token']}")
    assert api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key).status_code == 201
    second = api_other.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second
    assert MissionException.objects.count() == 2


@pytest.mark.django_db
def test_retention_is_published_enforced_and_purged(api_a: APIClient, mission_a: Mission) -> None:
    with override_settings(IDEMPOTENCY_RETENTION_HOURS=6):
        assert api_a.get("/api/v1/capabilities").json()["idempotency"]["retention_hours"] == 6
        key, path = new_key(), f"/api/v1/missions/{mission_a.pk}/exceptions"
        api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    record = IdempotencyRecord.objects.get(key=key)
    assert record.expires_at - record.created_at == pytest.approx(timedelta(hours=6), abs=timedelta(seconds=5))
    assert idempotency_purge() == 0
    IdempotencyRecord.objects.filter(pk=record.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    # Past retention the key is free again: the same request runs anew.
    again = api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert MissionException.objects.count() == 2
    IdempotencyRecord.objects.filter(key=key).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert idempotency_purge() == 1
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.django_db
def test_server_error_frees_the_key(api_a: APIClient, mission_a: Mission, monkeypatch: pytest.MonkeyPatch) -> None:
    key, path = new_key(), f"/api/v1/missions/{mission_a.pk}/exceptions"

    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(services, "mission_exception_report", broken)
    api_a.raise_request_exception = False
    assert_problem(api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key), 500)
    assert not IdempotencyRecord.objects.filter(key=key).exists()
    monkeypatch.undo()
    assert api_a.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key).status_code == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_have_one_effect_on_postgresql(
    live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_service("PostgreSQL", connection.vendor == "postgresql")
    carrier = CarrierFactory()
    mission = MissionFactory(carrier=carrier, vehicle=VehicleFactory(carrier=carrier))
    token = fetch_token(issue_client(carrier))["access_token"]
    original = services.mission_exception_report
    started = threading.Event()

    def slow_report(**kwargs: Any) -> Any:
        # Hold the first request inside its transaction until the second has been sent.
        started.set()
        threading.Event().wait(0.5)
        return original(**kwargs)

    monkeypatch.setattr(services, "mission_exception_report", slow_report)
    key = str(uuid.uuid4())
    url = f"{live_server.url}/api/v1/missions/{mission.pk}/exceptions"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    results: list[requests.Response] = []

    def call() -> None:
        results.append(requests.post(url, json=EXCEPTION_BODY, headers=headers, timeout=30))

    first = threading.Thread(target=call)
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=call)
    second.start()
    first.join()
    second.join()
    statuses = sorted(r.status_code for r in results)
    assert MissionException.objects.filter(mission=mission).count() == 1
    assert statuses[0] == 201
    loser = next(r for r in results if r.status_code != 201 or r.headers.get("Idempotent-Replayed"))
    assert loser.status_code == 409 or loser.headers.get("Idempotent-Replayed") == "true"
    assert IdempotencyRecord.objects.get(key=key).status == IdempotencyStatus.COMPLETED


@pytest.mark.django_db
def test_get_needs_no_key(api_a: APIClient) -> None:
    assert api_a.get("/api/v1/missions").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_failing_after_commit_hook_keeps_the_committed_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import transaction

    carrier = CarrierFactory()
    mission = MissionFactory(carrier=carrier, vehicle=VehicleFactory(carrier=carrier))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {fetch_token(issue_client(carrier))['access_token']}")
    original = services.mission_exception_report

    def with_broken_hook(**kwargs: Any) -> Any:
        result = original(**kwargs)
        transaction.on_commit(lambda: 1 / 0)
        return result

    monkeypatch.setattr(services, "mission_exception_report", with_broken_hook)
    key, path = new_key(), f"/api/v1/missions/{mission.pk}/exceptions"
    first = api.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == 201
    replay = api.post(path, EXCEPTION_BODY, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert MissionException.objects.filter(mission=mission).count() == 1


@pytest.mark.django_db
def test_refusal_echoing_a_nul_character_is_stored_and_replayed(api_a: APIClient) -> None:
    key = new_key()
    body = '{"events": [], "bad\\u0000key": 1}'
    first = api_a.post("/api/v1/telemetry", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
    assert_problem(first, 400)
    replay = api_a.post("/api/v1/telemetry", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key)
    assert_problem(replay, 400)
    assert replay["Idempotent-Replayed"] == "true"


class _CreatedView(APIView):
    """A handler that answers 201 with a Location, as a create endpoint does."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []
    runs = 0

    @idempotent
    def post(self, request: Any) -> Response:
        type(self).runs += 1
        # Keys in an order a JSON column would not keep, and a string PostgreSQL's jsonb cannot hold.
        body = {"zeta": 1, "alpha": {"b": 2, "a": 1}, "note": "nul \u0000 kept", "run": type(self).runs}
        return Response(body, status=201, headers={"Location": f"/api/v1/things/{type(self).runs}"})


@pytest.mark.django_db
def test_status_content_type_location_and_body_bytes_are_replayed(partner_a: IssuedClient) -> None:
    principal = PartnerPrincipal(client=partner_a.client, carrier=partner_a.client.carrier, pk=partner_a.client.pk)
    factory = APIRequestFactory()
    view = _CreatedView.as_view()

    def call() -> Any:
        request = factory.post("/api/v1/things", b'{"name": "x"}', content_type="application/json")
        request.META["HTTP_IDEMPOTENCY_KEY"] = "create-1"
        force_authenticate(request, user=principal)
        response = view(request)
        if hasattr(response, "render"):  # the first answer; a replay is a plain, already complete response
            response.render()
        return response

    first, replay = call(), call()
    assert _CreatedView.runs == 1
    assert (replay.status_code, replay["Content-Type"], replay["Location"]) == (
        201,
        "application/json",
        "/api/v1/things/1",
    )
    assert (first.status_code, first["Content-Type"], first["Location"]) == (
        201,
        "application/json",
        "/api/v1/things/1",
    )
    assert replay.content == first.content
    assert first.content.startswith(b'{"zeta":1,"alpha":{"b":2,"a":1},"note":"nul \\u0000 kept"')
    assert replay["Idempotent-Replayed"] == "true"
