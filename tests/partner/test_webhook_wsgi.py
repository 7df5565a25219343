"""The WSGI fast path for signed telemetry webhooks: same verification and answers as the view, less overhead."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client
from django.utils import timezone

from missions.events import Actor
from missions.models import Carrier, Mission, TelemetrySample, WebhookReceipt, WebhookSecret
from missions.models.telemetry import TelemetryWindowEvent
from missions.partner import services as partner_services
from missions.partner.api.webhook_wsgi import WebhookFastPath
from missions.partner.api.webhooks import webhook_sign
from tests.partner.test_isolation import telemetry_event

# close_old_connections() runs around each fast-path request, as Django does around its own:
# that needs autocommit, so these tests use real transactions.
pytestmark = pytest.mark.django_db(transaction=True)


class Spy:
    """Django's WSGI handler, counting the requests the fast path handed over."""

    def __init__(self) -> None:
        self.django = WSGIHandler()
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self.calls += 1
        return self.django(environ, start_response)


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def app(spy: Spy) -> WebhookFastPath:
    return WebhookFastPath(spy)


@pytest.fixture
def secret_a(carrier_a: Carrier) -> str:
    return partner_services.webhook_secret_rotate(carrier_id=carrier_a.pk, actor=Actor.system("t")).secret


def post(
    app: WebhookFastPath,
    carrier: Carrier,
    secret: str,
    payload: Any,
    *,
    webhook_id: str | None = None,
    tamper: bytes | None = None,
    content_type: str = "application/json",
) -> tuple[int, dict[str, str], dict[str, Any]]:
    body = json.dumps(payload).encode()
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time())
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/api/v1/webhooks/{carrier.slug}",
        "SERVER_NAME": "testserver",
        "HTTP_HOST": "testserver",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(tamper if tamper is not None else body)),
        "HTTP_WEBHOOK_ID": webhook_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(stamp),
        "HTTP_WEBHOOK_SIGNATURE": webhook_sign(secret=secret, webhook_id=webhook_id, timestamp=stamp, body=body),
        "wsgi.input": io.BytesIO(tamper if tamper is not None else body),
    }
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(headers)

    content = b"".join(app(environ, start_response))
    return captured["status"], captured["headers"], json.loads(content)


def _telemetry(*events: dict[str, Any]) -> dict[str, Any]:
    return {"type": "telemetry", "timestamp": timezone.now().isoformat(), "data": {"events": list(events)}}


def test_verified_telemetry_is_stored_without_django(
    app: WebhookFastPath, spy: Spy, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    event = telemetry_event(mission_a)
    status, headers, body = post(app, carrier_a, secret_a, _telemetry(event), webhook_id="msg_1")
    assert status == 200, body
    assert spy.calls == 0
    assert body == {
        "webhook_id": "msg_1",
        "duplicate": False,
        "type": "telemetry",
        "telemetry": {"accepted": 1, "duplicates": 0, "rejected": []},
    }
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert len(headers["X-Request-ID"]) == 32
    assert TelemetryWindowEvent.objects.filter(event_id=event["event_id"]).exists()
    assert TelemetrySample.objects.filter(mission=mission_a).count() == 1
    mission_a.refresh_from_db()
    assert mission_a.last_seen_at is not None
    assert not WebhookReceipt.objects.exists()  # telemetry dedupes on its event ids


def test_a_single_event_as_data_is_accepted(
    app: WebhookFastPath, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    payload = {"type": "telemetry", "data": telemetry_event(mission_a)}
    status, _, body = post(app, carrier_a, secret_a, payload)
    assert (status, body["telemetry"]["accepted"]) == (200, 1)


def test_redelivery_is_a_duplicate_and_stores_nothing_twice(
    app: WebhookFastPath, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    payload = _telemetry(telemetry_event(mission_a))
    post(app, carrier_a, secret_a, payload, webhook_id="msg_same")
    status, _, body = post(app, carrier_a, secret_a, payload, webhook_id="msg_same")
    assert status == 200
    assert body["duplicate"] is True
    assert body["telemetry"] == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert TelemetryWindowEvent.objects.count() == 1
    assert TelemetrySample.objects.count() == 1


def test_partial_batch_names_the_rejected_events(
    app: WebhookFastPath, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    bad = telemetry_event(mission_a, position={"lat": 91, "lon": 0})
    status, _, body = post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a), bad))
    assert status == 200
    assert body["telemetry"]["accepted"] == 1
    assert body["telemetry"]["rejected"] == [{"index": 1, "reason": "position.lat: 91 is out of range [-90, 90]"}]


def test_nothing_storable_is_a_422_problem(
    app: WebhookFastPath, carrier_a: Carrier, carrier_b: Carrier, secret_a: str, mission_a: Mission
) -> None:
    from tests.factories import MissionFactory

    other = MissionFactory(carrier=carrier_b)
    status, headers, body = post(app, carrier_a, secret_a, _telemetry(telemetry_event(other)))
    assert status == 422
    assert headers["Content-Type"] == "application/problem+json"
    assert body["type"].endswith("telemetry-rejected")
    assert body["errors"][0]["pointer"] == "/data/events/0"
    assert "not a mission of this carrier" in body["detail"]
    assert not TelemetryWindowEvent.objects.exists()


def test_bad_signature_goes_to_the_view_and_is_401(
    app: WebhookFastPath, spy: Spy, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    payload = _telemetry(telemetry_event(mission_a))
    tampered = json.dumps(payload).replace("96.5", "96.6").encode()
    status, headers, body = post(app, carrier_a, secret_a, payload, tamper=tampered)
    assert status == 401
    assert spy.calls == 1
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"].endswith("webhook-signature-invalid")
    assert not TelemetryWindowEvent.objects.exists()


def test_other_event_types_are_handled_by_the_view(
    app: WebhookFastPath, spy: Spy, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    payload = {"type": "mission.status", "data": {"mission_id": mission_a.pk, "status": "en_route"}}
    status, _, body = post(app, carrier_a, secret_a, payload)
    assert (status, spy.calls) == (200, 1)
    assert body["type"] == "mission.status"
    mission_a.refresh_from_db()
    assert mission_a.status == "en_route"


@pytest.mark.parametrize("stamp", ["yesterday", "2026-12-01", "2026-12-01T10:00:00"])
def test_malformed_envelope_timestamp_is_left_to_the_view(
    app: WebhookFastPath, spy: Spy, carrier_a: Carrier, secret_a: str, mission_a: Mission, stamp: str
) -> None:
    # Not RFC 3339 (a date alone, no offset): the schema forbids it, so the view refuses it as on daphne.
    payload = {**_telemetry(telemetry_event(mission_a)), "timestamp": stamp}
    status, _, _ = post(app, carrier_a, secret_a, payload)
    assert (status, spy.calls) == (400, 1)
    assert not TelemetryWindowEvent.objects.exists()


def test_unknown_carrier_and_wrong_content_type_are_left_to_the_view(
    app: WebhookFastPath, spy: Spy, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    ghost = Carrier(slug="no-such-carrier")
    status, _, _ = post(app, ghost, secret_a, _telemetry(telemetry_event(mission_a)))
    assert (status, spy.calls) == (404, 1)
    status, _, _ = post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a)), content_type="text/plain")
    assert (status, spy.calls) == (415, 2)


def test_revoked_secret_stops_verifying_at_its_expiry(
    app: WebhookFastPath, spy: Spy, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    assert post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a)))[0] == 200  # facts now cached
    WebhookSecret.objects.filter(carrier=carrier_a).update(valid_until=timezone.now() - timedelta(seconds=1))
    cached = app._facts[carrier_a.slug]
    app._facts[carrier_a.slug] = type(cached)(
        carrier=cached.carrier,
        secrets=tuple((s, timezone.now() - timedelta(seconds=1)) for s, _ in cached.secrets),
        fetched_at=cached.fetched_at,
    )
    status, _, _ = post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a)))
    assert status == 401


def test_rate_limit_per_carrier_is_a_429_problem(
    app: WebhookFastPath, carrier_a: Carrier, secret_a: str, mission_a: Mission, settings: Any
) -> None:
    settings.WEBHOOK_RATE_LIMIT = 2
    assert post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a)))[0] == 200
    assert post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a)))[0] == 200
    status, headers, body = post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a)))
    assert status == 429
    assert headers["Content-Type"] == "application/problem+json"
    assert body["type"].endswith("rate-limited")
    assert TelemetryWindowEvent.objects.count() == 2


def test_fast_path_and_view_answer_alike(
    app: WebhookFastPath, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    client = Client()
    bad = telemetry_event(mission_a, ts="not a time")
    fast = post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a), bad), webhook_id="msg_a")[2]
    raw = json.dumps(_telemetry(telemetry_event(mission_a), bad)).encode()
    stamp = int(time.time())
    response = client.generic(
        "POST",
        f"/api/v1/webhooks/{carrier_a.slug}",
        raw,
        content_type="application/json",
        HTTP_WEBHOOK_ID="msg_a",
        HTTP_WEBHOOK_TIMESTAMP=str(stamp),
        HTTP_WEBHOOK_SIGNATURE=webhook_sign(secret=secret_a, webhook_id="msg_a", timestamp=stamp, body=raw),
    )
    assert response.status_code == 200
    assert response.json() == fast


def test_empty_event_list_and_a_rejected_single_event_are_422(
    app: WebhookFastPath, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    status, _, body = post(app, carrier_a, secret_a, {"type": "telemetry", "data": {"events": []}})
    assert (status, body["detail"]) == (422, "data.events: expected a non-empty list.")
    single = {"type": "telemetry", "data": telemetry_event(mission_a, position={"lat": 0, "lon": 181})}
    status, _, body = post(app, carrier_a, secret_a, single)
    assert status == 422
    assert body["errors"] == [
        {"pointer": "/data", "detail": "position.lon: 181 is out of range [-180, 180]", "code": "rejected"}
    ]


def test_fast_path_answers_and_rejected_events_are_on_the_metrics_django_uses(
    app: WebhookFastPath, spy: Spy, carrier_a: Carrier, secret_a: str, mission_a: Mission
) -> None:
    """The canary analysis reads tms_http_* by route and tms_telemetry_events_rejected: deliveries the fast
    path answers count under the same route label as the ones Django answers."""
    from django.urls import resolve
    from prometheus_client import REGISTRY

    from missions.partner.api.webhook_wsgi import WEBHOOK_ENDPOINT

    assert "/" + resolve(f"/api/v1/webhooks/{carrier_a.slug}").route == WEBHOOK_ENDPOINT

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    ok = {"endpoint": WEBHOOK_ENDPOINT, "method": "POST", "status": "2xx"}
    refused = {**ok, "status": "4xx"}
    before = (sample("tms_http_requests_total", **ok), sample("tms_http_requests_total", **refused))
    timed = sample("tms_http_request_duration_seconds_count", endpoint=WEBHOOK_ENDPOINT, method="POST")
    rejected = sample("tms_telemetry_events_rejected_total", source="webhook")
    bad = telemetry_event(mission_a, position={"lat": 91, "lon": 0})
    assert post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a), bad))[0] == 200
    assert post(app, carrier_a, secret_a, _telemetry(bad))[0] == 422
    assert spy.calls == 0  # both answered by the fast path
    assert sample("tms_http_requests_total", **ok) == before[0] + 1
    assert sample("tms_http_requests_total", **refused) == before[1] + 1
    assert sample("tms_http_request_duration_seconds_count", endpoint=WEBHOOK_ENDPOINT, method="POST") == timed + 2
    assert sample("tms_telemetry_events_rejected_total", source="webhook") == rejected + 2


def test_a_mission_another_carrier_reported_on_is_still_refused(
    app: WebhookFastPath, carrier_a: Carrier, carrier_b: Carrier, secret_a: str, mission_a: Mission
) -> None:
    # The fast path keeps one mission cache for every carrier of the process: carrier A's delivery
    # puts its mission in it, and carrier B, naming A's mission and truck, must still be refused.
    status, _, body = post(app, carrier_a, secret_a, _telemetry(telemetry_event(mission_a)))
    assert (status, body["telemetry"]["accepted"]) == (200, 1)
    secret_b = partner_services.webhook_secret_rotate(carrier_id=carrier_b.pk, actor=Actor.system("t")).secret
    event = telemetry_event(mission_a)
    status, _, body = post(app, carrier_b, secret_b, _telemetry(event))
    assert status == 422, body
    assert not TelemetryWindowEvent.objects.filter(event_id=event["event_id"]).exists()
