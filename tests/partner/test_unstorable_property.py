"""Property: a string no column can store (U+0000, a lone surrogate) never gets a 5xx, on any write endpoint.

For every write endpoint of the partner API, valid bodies (with free-form
nested content where the endpoint takes some) get one unstorable string put at
a random place: a value, a member name, or a new member at any depth, sent as a
JSON escape or as raw bytes. Against daphne and gunicorn, each answer must be:

* never a 5xx;
* outside a batch's events: 400 ``application/problem+json``, ``validation-error``,
  with one error whose JSON pointer names the place (the object, for a member name),
  and nothing stored changed;
* inside one event of a batch (the API's ``events``, a webhook delivery's
  ``data.events``): that event refused in the per-item result, the other events
  stored, and nothing stored before changed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.apps import apps
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from missions.models import Mission, TelemetrySample
from missions.models.partner import IdempotencyRecord
from missions.models.telemetry import TelemetryWindowEvent
from tests.partner.live import RawResponse, raw_request
from tests.partner.senders import Partner, api_headers, partner_make, signed_headers
from tests.servers import AppServer as LiveApp
from tests.unstorable import Injected, Path, encode, free_json, injected, pointer

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = 25
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run and in CI
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- The partner and its state ------------------------------------------------------------------------


@pytest.fixture
def partner() -> Partner:
    return partner_make("prop")


# Rows a refused request may add: its idempotency record (a refusal is replayed like any answer).
_UNTOUCHED_EXCEPT = {IdempotencyRecord}
# What storing good telemetry changes: new window rows and samples, and the mission's last position.
_TELEMETRY_GROWS = {TelemetryWindowEvent, TelemetrySample}
_TELEMETRY_MOVES = {Mission}


State = dict[type, set[str]]


def stored_state() -> State:
    """Every row of the product's tables (and the OAuth tables), each as canonical JSON."""
    models = [m for m in apps.get_models() if m._meta.app_label in {"missions", "sla", "runbooks", "oauth2_provider"}]
    return {
        m: {json.dumps(row, default=str, sort_keys=True) for row in m.objects.values_list()}
        for m in models
        if m not in _UNTOUCHED_EXCEPT and not m._meta.proxy
    }


def window_event_ids() -> set[str]:
    return {str(e) for e in TelemetryWindowEvent.objects.values_list("event_id", flat=True)}


@dataclass
class Snapshot:
    state: State
    window_ids: set[str]


def snapshot() -> Snapshot:
    return Snapshot(state=stored_state(), window_ids=window_event_ids())


def event(partner: Partner) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "mission_id": partner.mission.pk,
        "vehicle_id": partner.mission.vehicle.external_id if partner.mission.vehicle else "",
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "position": {"lat": 32.5, "lon": -96.5, "speed_kph": 80.0},
        "health": {"ecu_errors": ["P0301"], "critical_sensors_ok": True},
        "connectivity": {"uplink": "5g"},
    }


def api_post(app: LiveApp, partner: Partner, path: str, body: bytes) -> RawResponse:
    return raw_request(app, "POST", path, headers=api_headers(partner), body=body)


def webhook_post(app: LiveApp, partner: Partner, body: bytes) -> RawResponse:
    path = f"/api/v1/webhooks/{partner.carrier.slug}"
    return raw_request(app, "POST", path, headers=signed_headers(partner, body), body=body)


# --- The property --------------------------------------------------------------------------------------


def check(
    response: RawResponse,
    case: Injected,
    before: Snapshot,
    *,
    items: Path | None = None,
    events: list[dict[str, Any]] | None = None,
    outcome: Callable[[dict[str, Any]], dict[str, Any]] = lambda body: body,
) -> None:
    assert response.status < 500, (response.status, response.body[:300])
    after = stored_state()
    per_item = items is not None and case.path[: len(items)] == items and len(case.path) > len(items)
    if not per_item:
        assert response.status == 400, (case.path, response.status, response.body[:300])
        assert response.headers["content-type"] == "application/problem+json"
        problem = json.loads(response.body)
        assert problem["type"].endswith("validation-error")
        assert [(e["pointer"], e["code"]) for e in problem["errors"]] == [(pointer(case.path), "unstorable_string")]
        assert after == before.state
        return
    assert events is not None and items is not None
    bad_index = int(case.path[len(items)])
    assert response.status in (200, 202), (case.path, response.status, response.body[:300])
    result = outcome(json.loads(response.body))
    assert [r["index"] for r in result["rejected"]] == [bad_index]
    assert result["accepted"] == len(events) - 1
    good = {e["event_id"] for i, e in enumerate(events) if i != bad_index}
    assert window_event_ids() == before.window_ids | good
    for model, rows in before.state.items():
        if model in _TELEMETRY_GROWS:
            assert rows <= after[model]
        elif model not in _TELEMETRY_MOVES:
            assert after[model] == rows, model


@given(data=st.data())
@PROPERTY
def test_offers(live_app: LiveApp, partner: Partner, data: st.DataObject) -> None:
    base = {"kind": "counter", "price_usd": "1500.00", "reason": "fuel", "metadata": data.draw(free_json)}
    case, raw = data.draw(injected(base)), data.draw(st.booleans())
    before = snapshot()
    response = api_post(live_app, partner, f"/api/v1/tenders/{partner.tender.pk}/offers", encode(case.body, raw))
    check(response, case, before)


@given(data=st.data())
@PROPERTY
def test_mission_status_and_autonomy(live_app: LiveApp, partner: Partner, data: st.DataObject) -> None:
    suffix, base = data.draw(
        st.sampled_from([("status", {"status": "en_route", "reason": "go"}), ("autonomy-mode", {"mode": "manual"})])
    )
    case, raw = data.draw(injected(base)), data.draw(st.booleans())
    before = snapshot()
    response = api_post(live_app, partner, f"/api/v1/missions/{partner.mission.pk}/{suffix}", encode(case.body, raw))
    check(response, case, before)


@given(data=st.data())
@PROPERTY
def test_mission_exceptions(live_app: LiveApp, partner: Partner, data: st.DataObject) -> None:
    base = {"kind": "degraded_sensors", "detail": "lidar", "data": data.draw(free_json)}
    case, raw = data.draw(injected(base)), data.draw(st.booleans())
    before = snapshot()
    response = api_post(live_app, partner, f"/api/v1/missions/{partner.mission.pk}/exceptions", encode(case.body, raw))
    check(response, case, before)


@given(data=st.data())
@PROPERTY
def test_route_plans(live_app: LiveApp, partner: Partner, data: st.DataObject) -> None:
    # The submission around the signed bytes (the bytes themselves: tests/partner/test_route_plans.py).
    base = {"artifact": "e30=", "signature": "MEUCIQ==", "digest": "sha256:" + "0" * 64, "size": 2}
    case, raw = data.draw(injected(base)), data.draw(st.booleans())
    before = snapshot()
    path = f"/api/v1/missions/{partner.mission.pk}/route-plans"
    check(api_post(live_app, partner, path, encode(case.body, raw)), case, before)


@given(data=st.data())
@PROPERTY
def test_telemetry_single_and_batch(live_app: LiveApp, partner: Partner, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        case, raw = data.draw(injected(event(partner))), data.draw(st.booleans())
        before = snapshot()
        check(api_post(live_app, partner, "/api/v1/telemetry", encode(case.body, raw)), case, before)
        return
    events = [event(partner) for _ in range(3)]
    case, raw = data.draw(injected({"events": events})), data.draw(st.booleans())
    before = snapshot()
    response = api_post(live_app, partner, "/api/v1/telemetry/batch", encode(case.body, raw))
    check(response, case, before, items=("events",), events=events)


@given(data=st.data())
@PROPERTY
def test_webhook_deliveries(live_app: LiveApp, partner: Partner, data: st.DataObject) -> None:
    mission_id = partner.mission.pk
    kind = data.draw(st.sampled_from(["mission.status", "mission.exception", "offer", "telemetry", "telemetry-batch"]))
    events = [event(partner) for _ in range(3)]
    payload: Any = {
        "mission.status": {"mission_id": mission_id, "status": "en_route", "reason": "go"},
        "mission.exception": {"mission_id": mission_id, "kind": "lost_comms", "data": data.draw(free_json)},
        "offer": {"tender_id": partner.tender.pk, "kind": "reject", "reason": "no truck"},
        "telemetry": event(partner),
        "telemetry-batch": {"events": events},
    }[kind]
    envelope = {"type": kind.removesuffix("-batch"), "timestamp": "2026-01-01T00:00:00Z", "data": payload}
    case, raw = data.draw(injected(envelope)), data.draw(st.booleans())
    before = snapshot()
    response = webhook_post(live_app, partner, encode(case.body, raw))
    if kind == "telemetry-batch":
        check(
            response,
            case,
            before,
            items=("data", "events"),
            events=events,
            outcome=lambda body: dict(body["telemetry"]),
        )
    else:
        check(response, case, before)
