"""Request bodies on the real servers, daphne and gunicorn: chunked bodies, the size limit, unstorable strings.

Every request here is written by hand over a socket (``tests.partner.live.raw_request``):
chunked framing, a declared length no body follows, and bytes no JSON library would send.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from missions.models import MissionException, Offer
from missions.models.telemetry import TelemetryWindowEvent
from tests.partner.conftest import issue_client
from tests.partner.live import RawResponse, pieces, raw_request, refused_in_time
from tests.partner.senders import Partner, api_headers, partner_make, signed_headers
from tests.partner.test_isolation import telemetry_event
from tests.servers import AppServer as LiveApp

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024


@pytest.fixture
def partner() -> Partner:
    return partner_make("live")


def problem(response: RawResponse, status: int) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body[:500])
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = json.loads(response.body)
    assert body["status"] == status
    return dict(body)


# --- Chunked bodies ------------------------------------------------------------------------------


def test_a_small_chunked_body_is_read_in_full(live_app: LiveApp, partner: Partner) -> None:
    body = json.dumps({"kind": "degraded_sensors", "detail": "lidar 2 dirty"}).encode()
    response = raw_request(
        live_app,
        "POST",
        f"/api/v1/missions/{partner.mission.pk}/exceptions",
        headers=api_headers(partner),
        chunks=pieces(body, 7),  # the body split mid-token, in many small chunks
    )
    assert response.status == 201, response.body
    assert json.loads(response.body)["kind"] == "degraded_sensors"
    assert MissionException.objects.filter(mission=partner.mission, detail="lidar 2 dirty").count() == 1


def test_a_chunked_offer_and_telemetry_batch_are_read_in_full(live_app: LiveApp, partner: Partner) -> None:
    offer = json.dumps({"kind": "accept", "vehicle_external_id": partner.mission.vehicle.external_id}).encode()
    response = raw_request(
        live_app,
        "POST",
        f"/api/v1/tenders/{partner.tender.pk}/offers",
        headers=api_headers(partner),
        chunks=pieces(offer, 10),
    )
    assert response.status == 201, response.body
    assert Offer.objects.filter(tender=partner.tender, kind="accept").count() == 1

    events = [telemetry_event(partner.mission) for _ in range(20)]
    batch = json.dumps({"events": events}).encode()
    response = raw_request(
        live_app, "POST", "/api/v1/telemetry/batch", headers=api_headers(partner), chunks=pieces(batch, 1000)
    )
    assert response.status == 202, response.body
    assert json.loads(response.body) == {"accepted": 20, "duplicates": 0, "rejected": []}
    assert TelemetryWindowEvent.objects.filter(mission=partner.mission).count() == 20


def test_a_chunked_signed_webhook_is_verified_and_stored(live_app: LiveApp, partner: Partner) -> None:
    # On gunicorn this is the WSGI fast path's delivery; on daphne the view's.
    event = telemetry_event(partner.mission)
    body = json.dumps({"type": "telemetry", "data": {"events": [event]}}).encode()
    response = raw_request(
        live_app,
        "POST",
        f"/api/v1/webhooks/{partner.carrier.slug}",
        headers=signed_headers(partner, body),
        chunks=pieces(body, 64),
    )
    assert response.status == 200, response.body
    assert json.loads(response.body)["telemetry"] == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert TelemetryWindowEvent.objects.filter(event_id=event["event_id"]).exists()


def test_a_chunked_token_request_is_read_in_full(live_app: LiveApp, partner: Partner) -> None:
    issued = issue_client(partner.carrier)
    form = f"grant_type=client_credentials&client_id={issued.client_id}&client_secret={issued.client_secret}"
    response = raw_request(
        live_app,
        "POST",
        "/oauth2/token",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        chunks=pieces(form.encode(), 16),
    )
    assert response.status == 200, response.body
    assert json.loads(response.body)["token_type"] == "Bearer"


@pytest.mark.parametrize("path", ["/api/v1/telemetry/batch", "/api/v1/webhooks/{slug}"])
def test_a_chunked_body_far_past_the_limit_is_refused_midway(live_app: LiveApp, partner: Partner, path: str) -> None:
    endpoint = path.format(slug=partner.carrier.slug)
    filler = b'{"events": [' + b" " * (64 * 1024 - 12)
    bound = refused_in_time(1_048_576)
    response = raw_request(
        live_app,
        "POST",
        endpoint,
        headers=api_headers(partner) if "webhooks" not in endpoint else signed_headers(partner, b"{}"),
        chunks=(filler if i == 0 else b" " * (64 * 1024) for i in range(2 * bound // (64 * 1024))),  # lazily
    )
    body = problem(response, 413)
    assert body["type"].endswith("body-too-large")
    assert body["max_body_bytes"] == 1_048_576
    # Refused while the body was still coming: the client had sent the limit plus what the
    # sockets' buffers hold, not the whole body (twice that).
    assert response.sent_body_bytes <= bound, (response.sent_body_bytes, bound)
    assert not TelemetryWindowEvent.objects.exists()
    # The server is fine afterwards.
    again = raw_request(live_app, "GET", "/healthz")
    assert again.status == 200


def test_a_declared_length_over_the_limit_is_refused_before_the_body(live_app: LiveApp, partner: Partner) -> None:
    # Only the headers are sent: the answer cannot wait for a body that never comes.
    headers = {**api_headers(partner), "Content-Length": str(50 * MB)}
    response = raw_request(live_app, "POST", "/api/v1/telemetry/batch", headers=headers)
    body = problem(response, 413)
    assert body["type"].endswith("body-too-large")


def test_a_body_at_the_limit_is_read_and_one_byte_over_is_not(live_app: LiveApp, partner: Partner) -> None:
    exact = json.dumps({"events": [telemetry_event(partner.mission)]}).encode()
    exact = exact[:-1] + b" " * (1_048_576 - len(exact)) + b"}"
    assert len(exact) == 1_048_576
    ok = raw_request(
        live_app, "POST", "/api/v1/telemetry/batch", headers=api_headers(partner), chunks=pieces(exact, 100_000)
    )
    assert ok.status == 202, ok.body
    over = raw_request(
        live_app,
        "POST",
        "/api/v1/telemetry/batch",
        headers=api_headers(partner),
        chunks=pieces(exact[:-1] + b" }", 100_000),
    )
    assert problem(over, 413)["type"].endswith("body-too-large")


# --- Unstorable strings, as escapes and as raw bytes --------------------------------------------------

NUL_ESCAPE = b"\\u0000"
SURROGATE_ESCAPE = b"\\ud800"
SURROGATE_BYTES = b"\xed\xa0\x80"  # U+D800 encoded as if it were a character: not UTF-8
BAD = pytest.mark.parametrize("bad", [NUL_ESCAPE, SURROGATE_ESCAPE, SURROGATE_BYTES], ids=["nul", "esc", "raw"])


@BAD
def test_a_mission_exception_with_an_unstorable_string_is_a_400_pointing_at_it(
    live_app: LiveApp, partner: Partner, bad: bytes
) -> None:
    body = b'{"kind": "degraded_sensors", "detail": "lidar' + bad + b'", "data": {"ok": 1}}'
    response = raw_request(
        live_app, "POST", f"/api/v1/missions/{partner.mission.pk}/exceptions", headers=api_headers(partner), body=body
    )
    problem_doc = problem(response, 400)
    assert problem_doc["type"].endswith("validation-error")
    assert problem_doc["errors"] == [
        {"pointer": "/detail", "detail": problem_doc["errors"][0]["detail"], "code": "unstorable_string"}
    ]
    assert not MissionException.objects.filter(mission=partner.mission).exists()


@BAD
def test_a_bad_member_name_deep_in_a_body_is_pointed_at(live_app: LiveApp, partner: Partner, bad: bytes) -> None:
    body = b'{"kind": "degraded_sensors", "detail": "x", "data": {"sensors": [{"ok": 1}, {"n' + bad + b'": 2}]}}'
    response = raw_request(
        live_app, "POST", f"/api/v1/missions/{partner.mission.pk}/exceptions", headers=api_headers(partner), body=body
    )
    error = problem(response, 400)["errors"][0]
    assert (error["pointer"], error["code"]) == ("/data/sensors/1", "unstorable_string")
    assert "member name" in error["detail"]
    assert not MissionException.objects.filter(mission=partner.mission).exists()


@BAD
def test_one_bad_event_in_a_batch_is_refused_alone(live_app: LiveApp, partner: Partner, bad: bytes) -> None:
    good = [telemetry_event(partner.mission), telemetry_event(partner.mission)]
    wrong = json.dumps(telemetry_event(partner.mission, vehicle_id="@@")).encode().replace(b"@@", b"TRK" + bad)
    body = b'{"events": [' + json.dumps(good[0]).encode() + b", " + wrong + b", " + json.dumps(good[1]).encode() + b"]}"
    response = raw_request(live_app, "POST", "/api/v1/telemetry/batch", headers=api_headers(partner), body=body)
    assert response.status == 202, response.body
    outcome = json.loads(response.body)
    assert outcome["accepted"] == 2
    assert [r["index"] for r in outcome["rejected"]] == [1]
    assert outcome["rejected"][0]["reason"].startswith("vehicle_id: holds U+")
    stored = {str(e) for e in TelemetryWindowEvent.objects.values_list("event_id", flat=True)}
    assert stored == {good[0]["event_id"], good[1]["event_id"]}


@BAD
def test_one_bad_event_in_a_webhook_delivery_is_refused_alone(live_app: LiveApp, partner: Partner, bad: bytes) -> None:
    good = telemetry_event(partner.mission)
    wrong = telemetry_event(partner.mission, health={"ecu_errors": ["@@"]})
    events = json.dumps([good, wrong]).encode().replace(b"@@", b"P0" + bad)
    body = b'{"type": "telemetry", "data": {"events": ' + events + b"}}"
    response = raw_request(
        live_app, "POST", f"/api/v1/webhooks/{partner.carrier.slug}", headers=signed_headers(partner, body), body=body
    )
    assert response.status == 200, response.body
    telemetry = json.loads(response.body)["telemetry"]
    assert telemetry["accepted"] == 1
    assert [r["index"] for r in telemetry["rejected"]] == [1]
    assert telemetry["rejected"][0]["reason"].startswith("health.ecu_errors[0]: holds U+")
    assert [str(e) for e in TelemetryWindowEvent.objects.values_list("event_id", flat=True)] == [good["event_id"]]


@BAD
def test_a_webhook_status_report_with_an_unstorable_string_is_a_400(
    live_app: LiveApp, partner: Partner, bad: bytes
) -> None:
    data = b'{"mission_id": %d, "status": "en_route", "reason": "go' % partner.mission.pk + bad + b'"}'
    body = b'{"type": "mission.status", "data": ' + data + b"}"
    response = raw_request(
        live_app, "POST", f"/api/v1/webhooks/{partner.carrier.slug}", headers=signed_headers(partner, body), body=body
    )
    error = problem(response, 400)["errors"][0]
    assert (error["pointer"], error["code"]) == ("/data/reason", "unstorable_string")
    partner.mission.refresh_from_db()
    assert partner.mission.status != "en_route"


@pytest.mark.parametrize(
    "credentials",
    [
        {"body": "grant_type=client_credentials&client_id=gw%00&client_secret=x"},
        {"basic": b"gw%00:x"},  # RFC 6749 2.3.1: the Basic credentials are form-encoded too
        {"body": "grant_type=client_credentials&client_id=%ED%A0%80&client_secret=x"},
    ],
    ids=["form", "basic", "raw-surrogate"],
)
def test_a_client_id_holding_an_unstorable_string_is_invalid_client(
    live_app: LiveApp, partner: Partner, credentials: dict[str, Any]
) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    body = credentials.get("body", "grant_type=client_credentials").encode()
    if "basic" in credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials["basic"]).decode()
    response = raw_request(live_app, "POST", "/oauth2/token", headers=headers, body=body)
    assert response.status == 401, response.body
    assert json.loads(response.body)["error"] == "invalid_client"
