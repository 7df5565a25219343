"""The backfill on the real servers, daphne (``make run``) and gunicorn: chunked and sized bodies, limits.

Requests are written by hand over a socket (``tests.partner.live.raw_request``), so the
chunk boundaries fall inside lines, a body can be sent lazily (a 20 MB upload is never
built), and the test sees how much of a refused body was sent before the answer came.
The servers run with a backfill limit of 3 MB (three times the API's 1 MiB) and 5,000 lines.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from missions.choices import MissionStatus
from missions.models import Carrier, Mission, TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.partner.api.backfill import BACKFILL_PATH
from tests.factories import CarrierFactory, MissionFactory
from tests.partner.conftest import fetch_token, issue_client
from tests.partner.live import RawResponse, pieces, raw_request, refused_in_time
from tests.servers import SERVER_KINDS, AppServer, start_app_server
from tests.telemetry.conftest import make_event
from tests.telemetry.test_backfill import ndjson

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MB = 1_000_000
MAX_BODY = 3 * MB
MAX_LINES = 5000


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(
    request: pytest.FixtureRequest, django_db_setup: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    kind = str(request.param)
    env = {"TELEMETRY_BACKFILL_MAX_BODY_BYTES": str(MAX_BODY), "TELEMETRY_BACKFILL_MAX_LINES": str(MAX_LINES)}
    app = start_app_server(kind, log_path=tmp_path_factory.mktemp(kind) / "server.log", env=env)
    try:
        yield app
    finally:
        app.stop()


@dataclass
class Fleet:
    carrier: Carrier
    mission: Mission
    token: str


@pytest.fixture
def fleet() -> Fleet:
    carrier = CarrierFactory(slug=f"bf-{uuid.uuid4().hex[:8]}")
    mission = MissionFactory(carrier=carrier, status=MissionStatus.EN_ROUTE)
    return Fleet(carrier=carrier, mission=mission, token=fetch_token(issue_client(carrier))["access_token"])


def headers(fleet: Fleet) -> dict[str, str]:
    return {"Authorization": f"Bearer {fleet.token}", "Content-Type": "application/x-ndjson"}


def buffered(mission: Mission, count: int) -> list[dict[str, Any]]:
    start = (datetime.now(UTC) - timedelta(hours=4)).replace(microsecond=0)
    return [make_event(mission, ts=start + timedelta(seconds=n)) for n in range(count)]


def answer(response: RawResponse) -> dict[str, Any]:
    assert response.status == 200, (response.status, response.body[:500])
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.body)
    return dict(json.loads(response.body))


def problem(response: RawResponse, status: int, kind: str) -> dict[str, Any]:
    assert response.status == status, (response.status, response.body[:500])
    assert response.headers["content-type"].startswith("application/problem+json")
    body = json.loads(response.body)
    assert body["status"] == status and body["type"] == f"/api/v1/problems/{kind}"
    return dict(body)


def test_a_chunked_upload_past_the_apis_body_limit_is_stored_and_answered_per_line(
    server: AppServer, fleet: Fleet
) -> None:
    events = buffered(fleet.mission, 3000)
    lines: list[Any] = list(events)
    lines[100:100] = [make_event(fleet.mission, vehicle_id="TRK\u0000")]  # line 101: an escaped NUL
    lines[2000:2000] = [b'{"event_id": "a\x00b"}']  # line 2001: a raw NUL byte (not JSON)
    lines[2500:2500] = ["{"]  # line 2501: cut short
    body = ndjson(*lines)
    assert len(body) > 1_048_576  # more than any other API request may carry
    response = raw_request(server, "POST", BACKFILL_PATH, headers=headers(fleet), chunks=pieces(body, 8191))
    result = answer(response)
    assert (result["lines"], result["accepted"], result["duplicates"], result["refused"]) == (3003, 3000, 0, 3)
    refused = {r["line"]: r["problem"] for r in result["results"] if r["status"] == "refused"}
    assert refused[101]["detail"] == "vehicle_id: holds U+0000 (NUL), which cannot be stored"
    assert refused[2001]["type"].endswith("/malformed-request")
    assert refused[2501]["type"].endswith("/malformed-request")
    assert [r["line"] for r in result["results"]] == list(range(1, 3004))
    assert TelemetryWindowEvent.objects.filter(mission=fleet.mission).count() == 3000
    assert TelemetrySample.objects.filter(mission=fleet.mission).count() == 3000


def test_an_upload_with_a_length_and_sent_again_stores_nothing_twice(server: AppServer, fleet: Fleet) -> None:
    body = ndjson(*buffered(fleet.mission, 500))
    first = answer(raw_request(server, "POST", BACKFILL_PATH, headers=headers(fleet), body=body))
    assert (first["accepted"], first["duplicates"]) == (500, 0)
    again = answer(raw_request(server, "POST", BACKFILL_PATH, headers=headers(fleet), chunks=pieces(body, 1000)))
    assert (again["accepted"], again["duplicates"]) == (0, 500)
    assert TelemetryWindowEvent.objects.filter(mission=fleet.mission).count() == 500


def test_a_chunked_body_past_the_backfill_limit_is_413_and_stores_nothing(server: AppServer, fleet: Fleet) -> None:
    # Valid events all along (a server that stored lines while reading would store some of these),
    # padded so that the bytes, not the lines, pass their limit first.
    line = ndjson(*buffered(fleet.mission, 1))[:-1] + b" " * 2000 + b"\n"
    chunk = line * (65_536 // len(line))
    bound = refused_in_time(MAX_BODY)
    total = 2 * bound  # sent lazily, never built
    response = raw_request(
        server, "POST", BACKFILL_PATH, headers=headers(fleet), chunks=(chunk for _ in range(total // len(chunk)))
    )
    body = problem(response, 413, "body-too-large")
    assert body["max_body_bytes"] == MAX_BODY
    # Refused while the body was coming: the limit and the sockets' buffers, not the whole body.
    assert response.sent_body_bytes <= bound, (response.sent_body_bytes, bound)
    assert not TelemetryWindowEvent.objects.filter(mission=fleet.mission).exists()
    assert raw_request(server, "GET", "/healthz").status == 200


def test_a_declared_length_past_the_backfill_limit_is_refused_before_the_body(server: AppServer, fleet: Fleet) -> None:
    response = raw_request(
        server, "POST", BACKFILL_PATH, headers={**headers(fleet), "Content-Length": str(MAX_BODY + 1)}
    )
    assert problem(response, 413, "body-too-large")["max_body_bytes"] == MAX_BODY


def test_more_lines_than_the_limit_is_413_and_stores_nothing(server: AppServer, fleet: Fleet) -> None:
    events = buffered(fleet.mission, MAX_LINES + 1)
    response = raw_request(
        server, "POST", BACKFILL_PATH, headers=headers(fleet), chunks=pieces(ndjson(*events), 65_536)
    )
    assert problem(response, 413, "batch-too-large")["max_backfill_lines"] == MAX_LINES
    assert not TelemetryWindowEvent.objects.filter(mission=fleet.mission).exists()


def test_ndjson_on_the_batch_endpoint_is_still_415(server: AppServer, fleet: Fleet) -> None:
    body = ndjson(*buffered(fleet.mission, 2))
    response = raw_request(
        server,
        "POST",
        "/api/v1/telemetry/batch",
        headers={**headers(fleet), "Idempotency-Key": str(uuid.uuid4())},
        body=body,
    )
    problem(response, 415, "unsupported-media-type")
