"""Signed carrier webhooks (Standard Webhooks): signature, tolerance, rotation, dedupe, isolation."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier, Mission, MissionException, WebhookReceipt, WebhookSecret
from missions.partner import services as partner_services
from missions.partner.api.webhooks import WebhookVerificationError, webhook_sign, webhook_verify
from tests.partner.conftest import assert_problem

# The published test vector of the Standard Webhooks reference libraries
# (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py, test_sign_function).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signing_reproduces_the_standard_webhooks_test_vector() -> None:
    assert (
        webhook_sign(secret=VECTOR_SECRET, webhook_id=VECTOR_ID, timestamp=VECTOR_TIMESTAMP, body=VECTOR_BODY)
        == VECTOR_SIGNATURE
    )


def test_verification_accepts_the_test_vector_among_other_signatures() -> None:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": f"v1,bm9wZQ== v2,whatever {VECTOR_SIGNATURE}",
    }
    now = datetime.fromtimestamp(VECTOR_TIMESTAMP, tz=UTC)
    assert (
        webhook_verify(secrets=[VECTOR_SECRET], headers=headers, body=VECTOR_BODY, now=now, tolerance_seconds=300)
        == VECTOR_ID
    )


def test_verification_refuses_a_one_bit_change_of_the_vector() -> None:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=",
    }
    now = datetime.fromtimestamp(VECTOR_TIMESTAMP, tz=UTC)
    with pytest.raises(WebhookVerificationError):
        webhook_verify(secrets=[VECTOR_SECRET], headers=headers, body=VECTOR_BODY, now=now, tolerance_seconds=300)


def _deliver(
    client: Client,
    carrier: Carrier,
    secret: str,
    payload: dict[str, Any],
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
    body: bytes | None = None,
    tamper: bytes | None = None,
) -> Any:
    raw = body if body is not None else json.dumps(payload).encode()
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = webhook_sign(secret=secret, webhook_id=webhook_id, timestamp=timestamp, body=raw)
    return client.generic(
        "POST",
        f"/api/v1/webhooks/{carrier.slug}",
        tamper if tamper is not None else raw,
        content_type="application/json",
        HTTP_WEBHOOK_ID=webhook_id,
        HTTP_WEBHOOK_TIMESTAMP=str(timestamp),
        HTTP_WEBHOOK_SIGNATURE=signature,
    )


@pytest.fixture
def secret_a(carrier_a: Carrier) -> str:
    return partner_services.webhook_secret_rotate(carrier_id=carrier_a.pk, actor=Actor.system("t")).secret


def _status(mission: Mission, status: str = "en_route") -> dict[str, Any]:
    return {
        "type": "mission.status",
        "timestamp": timezone.now().isoformat(),
        "data": {"mission_id": mission.pk, "status": status},
    }


@pytest.mark.django_db
def test_signed_delivery_applies_the_event(
    client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    response = _deliver(client, carrier_a, secret_a, _status(mission_a))
    assert response.status_code == 200, response.content
    assert response.json()["duplicate"] is False
    mission_a.refresh_from_db()
    assert mission_a.status == MissionStatus.EN_ROUTE


@pytest.mark.django_db
def test_exception_delivery(client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission) -> None:
    payload = {
        "type": "mission.exception",
        "data": {"mission_id": mission_a.pk, "kind": "reroute_request", "detail": "I-45 closed"},
    }
    assert _deliver(client, carrier_a, secret_a, payload).status_code == 200
    assert MissionException.objects.get().kind == "reroute_request"


@pytest.mark.django_db
def test_redelivery_has_no_second_effect(client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission) -> None:
    payload = {"type": "mission.exception", "data": {"mission_id": mission_a.pk, "kind": "lost_comms"}}
    first = _deliver(client, carrier_a, secret_a, payload, webhook_id="msg_same")
    again = _deliver(client, carrier_a, secret_a, payload, webhook_id="msg_same")
    assert first.status_code == again.status_code == 200
    assert again.json()["duplicate"] is True
    assert MissionException.objects.count() == 1
    assert WebhookReceipt.objects.count() == 1


@pytest.mark.django_db
def test_tampered_body_is_401_and_changes_nothing(
    client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    forged = json.dumps(_status(mission_a, "completed")).encode()
    response = _deliver(client, carrier_a, secret_a, _status(mission_a), tamper=forged)
    assert_problem(response, 401, "webhook-signature-invalid")
    mission_a.refresh_from_db()
    assert mission_a.status == MissionStatus.ASSIGNED
    assert not WebhookReceipt.objects.exists()


@pytest.mark.django_db
def test_signature_is_over_raw_bytes_not_reserialized_json(
    client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    # Same JSON meaning, different bytes (whitespace): the signature of the original bytes must not verify.
    raw = json.dumps(_status(mission_a)).encode()
    spaced = json.dumps(_status(mission_a), indent=2).encode()
    assert_problem(_deliver(client, carrier_a, secret_a, {}, body=raw, tamper=spaced), 401)


@pytest.mark.django_db
@pytest.mark.parametrize("skew", [-301, 301])
def test_outside_five_minute_tolerance_is_refused(
    client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission, skew: int
) -> None:
    response = _deliver(client, carrier_a, secret_a, _status(mission_a), timestamp=int(time.time()) + skew)
    assert_problem(response, 401, "webhook-signature-invalid")


@pytest.mark.django_db
@pytest.mark.parametrize("skew", [-290, 290])
def test_inside_tolerance_is_accepted(
    client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission, skew: int
) -> None:
    response = _deliver(client, carrier_a, secret_a, _status(mission_a), timestamp=int(time.time()) + skew)
    assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("missing", ["HTTP_WEBHOOK_ID", "HTTP_WEBHOOK_TIMESTAMP", "HTTP_WEBHOOK_SIGNATURE"])
def test_missing_header_is_401(
    client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission, missing: str
) -> None:
    raw = json.dumps(_status(mission_a)).encode()
    headers = {
        "HTTP_WEBHOOK_ID": "msg_1",
        "HTTP_WEBHOOK_TIMESTAMP": str(int(time.time())),
        "HTTP_WEBHOOK_SIGNATURE": webhook_sign(
            secret=secret_a, webhook_id="msg_1", timestamp=int(time.time()), body=raw
        ),
    }
    del headers[missing]
    response = client.generic(
        "POST", f"/api/v1/webhooks/{carrier_a.slug}", raw, content_type="application/json", **headers
    )
    assert_problem(response, 401)


@pytest.mark.django_db
def test_rotation_overlap_accepts_old_and_new_secret_then_only_new(
    client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    new = partner_services.webhook_secret_rotate(carrier_id=carrier_a.pk, actor=Actor.system("t"), overlap_hours=1)
    assert new.secret != secret_a
    payload = {"type": "mission.exception", "data": {"mission_id": mission_a.pk, "kind": "lost_comms"}}
    assert _deliver(client, carrier_a, secret_a, payload).status_code == 200
    assert _deliver(client, carrier_a, new.secret, payload).status_code == 200
    later = timezone.now() + timedelta(hours=1, seconds=1)
    with time_machine.travel(later, tick=False):
        stamp = int(later.timestamp())
        assert_problem(_deliver(client, carrier_a, secret_a, payload, timestamp=stamp), 401)
        assert _deliver(client, carrier_a, new.secret, payload, timestamp=stamp).status_code == 200
    assert WebhookSecret.objects.filter(carrier=carrier_a).count() == 2


@pytest.mark.django_db
def test_another_carriers_secret_does_not_verify(
    client: Client, carrier_a: Carrier, carrier_b: Carrier, secret_a: str, mission_a: Mission
) -> None:
    secret_b = partner_services.webhook_secret_rotate(carrier_id=carrier_b.pk, actor=Actor.system("t")).secret
    assert_problem(_deliver(client, carrier_a, secret_b, _status(mission_a)), 401)


@pytest.mark.django_db
def test_delivery_about_another_carriers_mission_is_404(
    client: Client, carrier_a: Carrier, carrier_b: Carrier, mission_a: Mission
) -> None:
    secret_b = partner_services.webhook_secret_rotate(carrier_id=carrier_b.pk, actor=Actor.system("t")).secret
    assert_problem(_deliver(client, carrier_b, secret_b, _status(mission_a)), 404)
    mission_a.refresh_from_db()
    assert mission_a.status == MissionStatus.ASSIGNED
    assert not WebhookReceipt.objects.exists()


@pytest.mark.django_db
def test_unknown_event_type_is_400(client: Client, carrier_a: Carrier, secret_a: str) -> None:
    body = assert_problem(_deliver(client, carrier_a, secret_a, {"type": "vehicle.teleported", "data": {}}), 400)
    assert body["errors"][0]["pointer"] == "/type"


@pytest.mark.django_db
def test_carrier_without_secret_refuses_everything(client: Client, carrier_a: Carrier, mission_a: Mission) -> None:
    assert_problem(_deliver(client, carrier_a, VECTOR_SECRET, _status(mission_a)), 401)


@pytest.mark.django_db
def test_telemetry_delivery_reaches_the_pipeline(
    client: Client, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    from tests.partner.test_isolation import telemetry_event

    payload = {"type": "telemetry", "data": {"events": [telemetry_event(mission_a)]}}
    assert _deliver(client, carrier_a, secret_a, payload).status_code == 200
    mission_a.refresh_from_db()
    assert mission_a.last_seen_at is not None
