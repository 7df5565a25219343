"""The WSGI entry point's handling of bodies: chunked deliveries stay on the fast path, unstorable strings."""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from django.utils import timezone

from missions.events import Actor
from missions.models import Carrier, Mission
from missions.models.telemetry import TelemetryWindowEvent
from missions.partner import services as partner_services
from missions.partner.api.webhook_wsgi import WebhookFastPath
from missions.partner.api.webhooks import webhook_sign
from tests.partner.test_isolation import telemetry_event
from tests.partner.test_webhook_wsgi import Spy
from tms_console.request_body import BodyLimitWSGI

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def django_app() -> Spy:
    return Spy()


@pytest.fixture
def fast_path(django_app: Spy) -> WebhookFastPath:
    return WebhookFastPath(django_app, group_commit=False)


@pytest.fixture
def secret(carrier_a: Carrier) -> str:
    return partner_services.webhook_secret_rotate(carrier_id=carrier_a.pk, actor=Actor.system("t")).secret


def deliver(
    application: Any, carrier: Carrier, secret: str, body: bytes, *, chunked: bool = False
) -> tuple[int, dict[str, Any]]:
    webhook_id = f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time())
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": f"/api/v1/webhooks/{carrier.slug}",
        "SERVER_NAME": "testserver",
        "HTTP_HOST": "testserver",
        "CONTENT_TYPE": "application/json",
        "HTTP_WEBHOOK_ID": webhook_id,
        "HTTP_WEBHOOK_TIMESTAMP": str(stamp),
        "HTTP_WEBHOOK_SIGNATURE": webhook_sign(secret=secret, webhook_id=webhook_id, timestamp=stamp, body=body),
        "wsgi.input": io.BytesIO(body),
    }
    if chunked:  # as gunicorn presents a chunked body: no length, a terminated input
        environ.update({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    setup_testing_defaults(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = int(status.split()[0])

    content = b"".join(application(environ, start_response))
    return captured["status"], json.loads(content)


def envelope(*events: Any) -> bytes:
    payload = {"type": "telemetry", "timestamp": timezone.now().isoformat(), "data": {"events": list(events)}}
    return json.dumps(payload).encode()


def test_a_chunked_delivery_is_served_by_the_fast_path(
    fast_path: WebhookFastPath, django_app: Spy, carrier_a: Carrier, secret: str, mission_a: Mission
) -> None:
    event = telemetry_event(mission_a)
    status, body = deliver(BodyLimitWSGI(fast_path), carrier_a, secret, envelope(event), chunked=True)
    assert (status, django_app.calls) == (200, 0)
    assert body["telemetry"]["accepted"] == 1
    assert TelemetryWindowEvent.objects.filter(event_id=event["event_id"]).exists()


def test_a_bad_event_in_a_batch_stays_on_the_fast_path_and_is_refused_alone(
    fast_path: WebhookFastPath, django_app: Spy, carrier_a: Carrier, secret: str, mission_a: Mission
) -> None:
    good, bad = telemetry_event(mission_a), telemetry_event(mission_a, vehicle_id="TRK\x00")
    status, body = deliver(fast_path, carrier_a, secret, envelope(good, bad))  # "\u0000" passes orjson
    assert (status, django_app.calls) == (200, 0)
    assert body["telemetry"]["rejected"] == [
        {"index": 1, "reason": "vehicle_id: holds U+0000 (NUL), which cannot be stored"}
    ]
    assert [str(e) for e in TelemetryWindowEvent.objects.values_list("event_id", flat=True)] == [good["event_id"]]


def test_an_unstorable_string_outside_the_events_goes_to_the_view_and_is_a_400(
    fast_path: WebhookFastPath, django_app: Spy, carrier_a: Carrier, secret: str, mission_a: Mission
) -> None:
    payload = json.loads(envelope(telemetry_event(mission_a)))
    payload["timestamp\x00"] = payload.pop("timestamp")
    status, body = deliver(fast_path, carrier_a, secret, json.dumps(payload).encode())
    assert (status, django_app.calls) == (400, 1)
    assert body["errors"][0]["pointer"] == ""  # a member name of the envelope itself
    assert body["errors"][0]["code"] == "unstorable_string"
    assert not TelemetryWindowEvent.objects.exists()


def test_a_lone_surrogate_escape_goes_to_the_view_which_refuses_only_its_event(
    fast_path: WebhookFastPath, django_app: Spy, carrier_a: Carrier, secret: str, mission_a: Mission
) -> None:
    good, bad = telemetry_event(mission_a), telemetry_event(mission_a, vehicle_id="TRK\ud800")
    status, body = deliver(fast_path, carrier_a, secret, envelope(good, bad))  # orjson refuses "\ud800"
    assert (status, django_app.calls) == (200, 1)
    assert [r["index"] for r in body["telemetry"]["rejected"]] == [1]
    assert [str(e) for e in TelemetryWindowEvent.objects.values_list("event_id", flat=True)] == [good["event_id"]]
