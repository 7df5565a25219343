"""Store-and-forward backfill over HTTP, in process (WSGI and ASGI): per-line answers, idempotency, isolation, limits.

``POST /api/v1/telemetry/backfill`` takes NDJSON, one telemetry event per line, and answers
every line: accepted, duplicate or refused with a problem document. The live servers
(daphne, gunicorn, chunked bodies) are in ``test_backfill_live``; filled gaps, the SLI and
the evidence in ``test_backfill_gaps``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from missions.choices import MissionStatus
from missions.models import Carrier, Mission, TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.partner.api.backfill import BACKFILL_PATH
from missions.telemetry.backfill import MAX_LINE_BYTES
from missions.telemetry.retention import telemetry_window_prune
from tests.factories import MissionFactory
from tests.partner.conftest import api_client, assert_problem, fetch_token, issue_client
from tests.telemetry.conftest import make_event

pytestmark = pytest.mark.django_db

NDJSON = "application/x-ndjson"


def ndjson(*lines: dict[str, Any] | str | bytes, end: bytes = b"\n") -> bytes:
    """Each item as one line: an event (JSON-encoded), or a line's text or bytes as given."""
    out = []
    for line in lines:
        if isinstance(line, dict):
            out.append(json.dumps(line).encode())
        elif isinstance(line, str):
            out.append(line.encode())
        else:
            out.append(line)
    return b"\n".join(out) + end


def answer_of(response: Any) -> dict[str, Any]:
    """The JSON answer of a backfill, read from its stream, with its declared length checked."""
    assert response.status_code == 200, response.content if not response.streaming else b""
    assert response["Content-Type"] == "application/json"
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    return dict(json.loads(body))


def backfill(client: APIClient, body: bytes, content_type: str = NDJSON, **extra: Any) -> Any:
    return client.post(BACKFILL_PATH, data=body, content_type=content_type, **extra)


def statuses(answer: dict[str, Any]) -> list[tuple[int, str]]:
    return [(r["line"], r["status"]) for r in answer["results"]]


def second_by_second(mission: Mission, start: datetime, count: int) -> list[dict[str, Any]]:
    """``count`` events of ``mission``, one a second from ``start`` (on a whole second)."""
    start = start.replace(microsecond=0)
    return [make_event(mission, ts=start + timedelta(seconds=n)) for n in range(count)]


@pytest.fixture
def mission(carrier_a: Carrier) -> Mission:
    return MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE, started_at=timezone.now())


@pytest.fixture
def api(carrier_a: Carrier) -> APIClient:
    return api_client(fetch_token(issue_client(carrier_a))["access_token"])


def test_the_path_is_the_registered_streamed_path() -> None:
    assert reverse("api-telemetry-backfill") == BACKFILL_PATH


def test_every_line_is_answered_in_order_and_a_bad_line_never_takes_good_ones_with_it(
    api: APIClient, mission: Mission
) -> None:
    start = datetime.now(UTC) - timedelta(minutes=30)
    good = second_by_second(mission, start, 4)
    nul_escape = make_event(mission, ts=start + timedelta(seconds=10), vehicle_id="TRK\u0000")
    raw_nul = json.dumps(make_event(mission)).replace('"en_route"', '"en_\x00route"').encode()  # a raw NUL byte
    lone_escape = json.dumps(make_event(mission, vehicle_id="\ud800"))  # json.dumps writes it as \ud800
    raw_surrogate = (
        json.dumps(make_event(mission, vehicle_id="XX")).replace('"XX"', '"\udc00"').encode("utf-8", "surrogatepass")
    )  # the bytes ED B0 80
    too_long = json.dumps(make_event(mission, vehicle_id="x" * 10)).replace("x" * 10, "x" * (MAX_LINE_BYTES + 10))
    body = ndjson(
        good[0],  # 1
        "not json",  # 2
        nul_escape,  # 3
        raw_nul,  # 4
        lone_escape,  # 5
        raw_surrogate,  # 6
        "[1, 2]",  # 7
        "",  # 8: blank, skipped without an answer
        '{"event_id": "' + str(uuid.uuid4()) + '"}',  # 9
        json.dumps(good[1]) + "\r",  # 10: CRLF
        too_long,  # 11
        "   ",  # 12: blank
        good[2],  # 13
        good[3],  # 14: the last line, without a line break
        end=b"",
    )
    answer = answer_of(backfill(api, body))
    assert statuses(answer) == [
        (1, "accepted"),
        (2, "refused"),
        (3, "refused"),
        (4, "refused"),
        (5, "refused"),
        (6, "refused"),
        (7, "refused"),
        (9, "refused"),
        (10, "accepted"),
        (11, "refused"),
        (13, "accepted"),
        (14, "accepted"),
    ]
    assert (answer["lines"], answer["accepted"], answer["duplicates"], answer["refused"]) == (12, 4, 0, 8)
    problems = {r["line"]: r["problem"] for r in answer["results"] if r["status"] == "refused"}
    for problem in problems.values():
        assert problem["type"].startswith("/api/v1/problems/") and problem["title"]
        assert problem["status"] in (400, 413, 422) and problem["detail"]
    assert problems[2]["type"].endswith("/malformed-request") and problems[2]["status"] == 400
    assert problems[3]["type"].endswith("/telemetry-rejected") and problems[3]["status"] == 422
    assert problems[3]["detail"] == "vehicle_id: holds U+0000 (NUL), which cannot be stored"
    assert problems[4]["type"].endswith("/malformed-request")  # a raw control character is not JSON
    assert "lone surrogate" in problems[5]["detail"] and problems[5]["type"].endswith("/telemetry-rejected")
    assert "lone surrogate" in problems[6]["detail"]
    assert problems[7]["detail"] == "event: expected an object, got a list"
    assert problems[9]["detail"] == "mission_id: this field is required"
    assert problems[11]["type"].endswith("/line-too-long") and problems[11]["status"] == 413
    assert problems[11]["max_line_bytes"] == MAX_LINE_BYTES
    accepted = {r["event_id"] for r in answer["results"] if r["status"] == "accepted"}
    assert accepted == {e["event_id"] for e in good}
    stored = set(map(str, TelemetryWindowEvent.objects.values_list("event_id", flat=True)))
    assert stored == accepted


def test_an_upload_sent_again_stores_nothing_twice(api: APIClient, mission: Mission) -> None:
    events = second_by_second(mission, datetime.now(UTC) - timedelta(minutes=20), 30)
    body = ndjson(*events, events[0])  # the first event twice in the same upload
    first = answer_of(backfill(api, body))
    assert (first["accepted"], first["duplicates"]) == (30, 1)
    assert first["results"][-1] == {"line": 31, "status": "duplicate", "event_id": events[0]["event_id"]}
    window, samples = TelemetryWindowEvent.objects.count(), TelemetrySample.objects.count()
    assert (window, samples) == (30, 30)

    again = answer_of(backfill(api, body))
    assert (again["accepted"], again["duplicates"], again["refused"]) == (0, 31, 0)
    assert {r["status"] for r in again["results"]} == {"duplicate"}
    assert (TelemetryWindowEvent.objects.count(), TelemetrySample.objects.count()) == (window, samples)


def test_an_upload_sent_again_after_the_dedupe_horizon_is_still_recognised(api: APIClient, mission: Mission) -> None:
    # The window's dedupe records are pruned TELEMETRY_DEDUPE_SECONDS after arrival (with PostgreSQL's
    # partitions, an hour goes whole once it ended the horizon and an hour before); the samples stay.
    events = second_by_second(mission, datetime.now(UTC) - timedelta(hours=2), 20)
    assert answer_of(backfill(api, ndjson(*events)))["accepted"] == 20
    telemetry_window_prune(now=timezone.now() + timedelta(hours=3))
    assert not TelemetryWindowEvent.objects.exists()
    again = answer_of(backfill(api, ndjson(*events)))
    assert (again["accepted"], again["duplicates"]) == (0, 20)
    assert TelemetrySample.objects.count() == 20
    assert not TelemetryWindowEvent.objects.exists()  # nothing written again, not even to the window


def test_a_long_upload_is_stored_in_chunks_and_answered_in_order(api: APIClient, mission: Mission) -> None:
    events = second_by_second(mission, datetime.now(UTC) - timedelta(hours=3), 2500)
    lines: list[dict[str, Any] | str] = list(events)
    lines.insert(1500, "{broken")  # in the second chunk
    answer = answer_of(backfill(api, ndjson(*lines)))
    assert (answer["lines"], answer["accepted"], answer["refused"]) == (2501, 2500, 1)
    assert [r["line"] for r in answer["results"]] == list(range(1, 2502))
    assert answer["results"][1500]["status"] == "refused"
    assert [r["event_id"] for r in answer["results"] if r["status"] == "accepted"] == [e["event_id"] for e in events]
    assert TelemetrySample.objects.filter(mission=mission).count() == 2500
    mission.refresh_from_db()
    assert mission.last_seen_at == datetime.fromisoformat(events[-1]["ts"])


def test_a_carrier_cannot_backfill_another_carriers_mission_or_vehicle(
    carrier_a: Carrier, carrier_b: Carrier, mission: Mission
) -> None:
    api_b = api_client(fetch_token(issue_client(carrier_b))["access_token"])
    own = MissionFactory(carrier=carrier_b, status=MissionStatus.EN_ROUTE)
    foreign = make_event(mission)
    foreign_vehicle = make_event(own, vehicle_id=mission.vehicle.external_id)
    answer = answer_of(backfill(api_b, ndjson(foreign, foreign_vehicle, make_event(own))))
    assert statuses(answer) == [(1, "refused"), (2, "refused"), (3, "accepted")]
    details = [r["problem"]["detail"] for r in answer["results"][:2]]
    assert details[0] == f"mission_id: mission {mission.pk} is not a mission of this carrier"
    assert details[1].startswith("vehicle_id:") and details[1].endswith(f"is not the vehicle of mission {own.pk}")
    assert not TelemetryWindowEvent.objects.filter(mission=mission).exists()
    assert TelemetryWindowEvent.objects.filter(mission=own).count() == 1


def test_authentication_scope_and_rate_limit_are_the_partner_apis(
    carrier_a: Carrier, mission: Mission, settings: Any
) -> None:
    body = ndjson(make_event(mission))
    assert_problem(backfill(APIClient(), body), 401, "authentication-required")
    read_only = api_client(fetch_token(issue_client(carrier_a, scopes="tender:read missions:read"))["access_token"])
    denied = assert_problem(backfill(read_only, body), 403, "insufficient-scope")
    assert denied["required_scope"] == "telemetry:write"
    settings.API_RATE_LIMIT = "1/min"
    api = api_client(fetch_token(issue_client(carrier_a))["access_token"])
    assert answer_of(backfill(api, body))["accepted"] == 1
    limited = assert_problem(backfill(api, ndjson(make_event(mission))), 429, "rate-limited")
    assert limited["violated-policies"] == ["partner"]
    assert TelemetryWindowEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("content_type", "extra"),
    [
        ("application/json", {}),
        ("application/x-ndjson; charset=latin-1", {}),
        ("application/x-ndjson", {"HTTP_CONTENT_ENCODING": "gzip"}),
        ("text/plain", {}),
    ],
)
def test_anything_but_plain_ndjson_is_415(
    api: APIClient, mission: Mission, content_type: str, extra: dict[str, str]
) -> None:
    problem = assert_problem(backfill(api, ndjson(make_event(mission)), content_type, **extra), 415)
    assert problem["type"].endswith("/unsupported-media-type")
    assert not TelemetryWindowEvent.objects.exists()


def test_ndjson_with_a_utf8_charset_is_taken(api: APIClient, mission: Mission) -> None:
    answer = answer_of(backfill(api, ndjson(make_event(mission)), "application/x-ndjson; charset=UTF-8"))
    assert answer["accepted"] == 1


def test_an_empty_or_blank_body_is_400(api: APIClient) -> None:
    for body in (b"", b"\n\n  \r\n"):
        problem = assert_problem(backfill(api, body), 400, "validation-error")
        assert problem["errors"][0]["code"] == "required"


def test_more_lines_than_the_limit_is_413_and_stores_nothing(api: APIClient, mission: Mission, settings: Any) -> None:
    settings.TELEMETRY_BACKFILL_MAX_LINES = 5
    events = second_by_second(mission, datetime.now(UTC) - timedelta(minutes=5), 6)
    problem = assert_problem(backfill(api, ndjson(*events)), 413, "batch-too-large")
    assert problem["max_backfill_lines"] == 5
    assert not TelemetryWindowEvent.objects.exists()
    # Five lines, the last one with or without its line break, are within the limit.
    assert answer_of(backfill(api, ndjson(*events[:5])))["accepted"] == 5
    assert answer_of(backfill(api, ndjson(*events[1:6], end=b"")))["accepted"] == 1


def test_a_body_over_the_backfill_limit_is_413_and_stores_nothing(
    api: APIClient, mission: Mission, settings: Any
) -> None:
    events = second_by_second(mission, datetime.now(UTC) - timedelta(minutes=5), 10)
    body = ndjson(*events)
    settings.TELEMETRY_BACKFILL_MAX_BODY_BYTES = len(body) - 1
    problem = assert_problem(backfill(api, body), 413, "body-too-large")
    assert problem["max_body_bytes"] == len(body) - 1
    assert not TelemetryWindowEvent.objects.exists()
    settings.TELEMETRY_BACKFILL_MAX_BODY_BYTES = len(body)
    assert answer_of(backfill(api, body))["accepted"] == 10


def test_the_backfill_limit_is_its_own_not_the_apis(api: APIClient, mission: Mission, settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 2048
    events = second_by_second(mission, datetime.now(UTC) - timedelta(minutes=5), 20)
    body = ndjson(*events)
    assert len(body) > 4 * 2048
    assert answer_of(backfill(api, body))["accepted"] == 20
    batch = api.post(
        "/api/v1/telemetry/batch", {"events": events}, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )
    assert_problem(batch, 413, "body-too-large")


def test_capabilities_describe_the_backfill(api: APIClient, settings: Any) -> None:
    body = api.get("/api/v1/capabilities").json()
    assert "rest-backfill" in body["telemetry"]["transports"]
    assert body["telemetry"]["backfill"] == {
        "path": BACKFILL_PATH,
        "media_type": NDJSON,
        "max_lines": settings.TELEMETRY_BACKFILL_MAX_LINES,
        "max_body_bytes": settings.TELEMETRY_BACKFILL_MAX_BODY_BYTES,
        "max_line_bytes": MAX_LINE_BYTES,
        "max_event_age_seconds": settings.TELEMETRY_MAX_AGE_SECONDS,
    }
    assert body["limits"]["max_backfill_lines"] == 100_000
    assert body["limits"]["max_backfill_body_bytes"] == settings.TELEMETRY_BACKFILL_MAX_BODY_BYTES


@pytest.mark.django_db(transaction=True)
async def test_under_asgi_the_answer_streams_from_an_asynchronous_iterator(carrier_a: Carrier) -> None:
    from asgiref.sync import sync_to_async

    @sync_to_async
    def setup() -> tuple[str, list[dict[str, Any]]]:
        mission = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
        token = fetch_token(issue_client(carrier_a))["access_token"]
        return token, second_by_second(mission, datetime.now(UTC) - timedelta(minutes=10), 3)

    token, events = await setup()
    client = AsyncClient()
    response = await client.post(
        BACKFILL_PATH, data=ndjson(*events, "nope"), content_type=NDJSON, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.is_async  # Django would read a synchronous iterator into a list first
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert int(response["Content-Length"]) == len(body)
    answer = json.loads(body)
    assert statuses(answer) == [(1, "accepted"), (2, "accepted"), (3, "accepted"), (4, "refused")]
    assert await TelemetryWindowEvent.objects.acount() == 3


# --- daphne: the body stays in the file it was received into -----------------------------------------


def test_daphne_hands_the_received_body_file_to_the_application(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import tempfile

    from daphne import http_protocol

    from tms_console.daphne_bodies import SCOPE_DRAINED_KEY, LimitedWebRequest
    from tms_console.request_body import SCOPE_BODY_KEY

    seen: dict[str, Any] = {}

    class Server:
        def create_application(self, protocol: Any, scope: dict[str, Any]) -> str:
            seen["scope"] = scope
            return "queue"

        def protocol_disconnected(self, protocol: Any) -> None:
            seen["disconnected"] = True

    def process(request: Any) -> None:  # what daphne's own process() does with the two
        seen["queued"] = request.content.read()
        seen["queue"] = request.server.create_application(request, {"type": "http"})

    class Channel:
        producer: Any = None

        def registerProducer(self, producer: Any, streaming: bool) -> None:
            assert streaming and self.producer is None
            self.producer = producer

        def unregisterProducer(self) -> None:
            self.producer = None

    # daphne's own request class (``install()`` may have put ours in its module's place already).
    daphne_request = LimitedWebRequest.__mro__[1]
    assert daphne_request.__module__ == http_protocol.__name__
    monkeypatch.setattr(daphne_request, "process", process)
    monkeypatch.setattr(daphne_request, "finish", lambda request: None)
    received = tempfile.TemporaryFile()  # noqa: SIM115  (closed by the code under test)
    received.write(b'{"line": 1}\n{"line": 2}\n')
    request = LimitedWebRequest.__new__(LimitedWebRequest)
    request.body_streamed, request.content, request.server = True, received, Server()
    request.producer, request.channel = None, Channel()
    request.process()
    assert seen["queued"] == b""  # nothing of the body goes through daphne's in-memory queue
    assert seen["queue"] == "queue"
    handed = seen["scope"][SCOPE_BODY_KEY]
    assert handed is received and handed.read() == b'{"line": 1}\n{"line": 2}\n'
    assert isinstance(request.content, io.BytesIO)
    # The answer's pace: Twisted pauses the request's producer while the socket's buffer is full.
    assert request.channel.producer is request.write_window
    assert seen["scope"][SCOPE_DRAINED_KEY] == request.write_window.wait
    request.finish()
    assert received.closed  # the answer is complete: the file goes
    assert request.channel.producer is None


async def test_a_paced_answer_waits_for_the_socket_between_pieces() -> None:
    import asyncio

    from tms_console.daphne_bodies import SCOPE_DRAINED_KEY, WriteWindow, paced

    window = WriteWindow()
    sent: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        for piece in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["body"])
        if message["body"] == b"a":
            window.pauseProducing()  # the socket's buffer is full after the first piece

    answering = asyncio.ensure_future(paced(app)({"type": "http", SCOPE_DRAINED_KEY: window.wait}, None, send))
    await asyncio.sleep(0.05)
    assert sent == [b"a"] and not answering.done()  # held until the socket has room
    window.resumeProducing()
    await asyncio.wait_for(answering, 5)
    assert sent == [b"a", b"b", b"c", b""]


@pytest.mark.django_db(transaction=True)
async def test_the_view_reads_a_body_handed_over_in_the_scope(carrier_a: Carrier) -> None:
    import tempfile

    from asgiref.sync import sync_to_async
    from asgiref.testing import ApplicationCommunicator
    from django.core.asgi import get_asgi_application

    from tms_console.request_body import SCOPE_BODY_KEY

    @sync_to_async
    def setup() -> tuple[str, list[dict[str, Any]]]:
        mission = MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)
        token = fetch_token(issue_client(carrier_a))["access_token"]
        return token, second_by_second(mission, datetime.now(UTC) - timedelta(minutes=10), 2)

    token, events = await setup()
    handed = tempfile.TemporaryFile()  # noqa: SIM115  (closed when collected)
    handed.write(ndjson(*events))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": BACKFILL_PATH,
        "raw_path": BACKFILL_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {token}".encode()), (b"content-type", NDJSON.encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        SCOPE_BODY_KEY: handed,
    }
    communicator = ApplicationCommunicator(get_asgi_application(), scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout=30)
    assert start["status"] == 200
    body = b""
    while True:
        message = await communicator.receive_output(timeout=30)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    assert statuses(json.loads(body)) == [(1, "accepted"), (2, "accepted")]
    assert await TelemetryWindowEvent.objects.acount() == 2


# --- Property: whatever the lines hold, each gets one answer and the good ones are stored ------------

_LINE = st.one_of(
    st.just(("event", None)),
    st.booleans().map(lambda raw: ("unstorable", raw)),
    st.binary(max_size=120).filter(lambda b: b"\n" not in b).map(lambda b: ("bytes", b)),
)


@hypothesis_settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples on every run and in CI
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kinds=st.lists(_LINE, min_size=1, max_size=8), crlf=st.booleans(), data=st.data())
def test_every_line_gets_one_answer_and_bad_ones_take_nothing_with_them(
    mission: Mission, kinds: list[tuple[str, Any]], crlf: bool, data: st.DataObject
) -> None:
    import io

    from missions.telemetry.backfill import telemetry_backfill
    from tests.unstorable import encode, injected

    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    lines: list[bytes] = []
    expected: list[tuple[int, str | None]] = []  # (line number, "accepted" / "refused" / None: either)
    good: set[str] = set()
    for number, (kind, extra) in enumerate(kinds, start=1):
        event = make_event(mission, ts=start + timedelta(seconds=number))
        if kind == "event":
            lines.append(json.dumps(event).encode())
            good.add(event["event_id"])
            expected.append((number, "accepted"))
        elif kind == "unstorable":
            lines.append(encode(data.draw(injected(event)).body, raw=extra))
            expected.append((number, "refused"))
        else:
            lines.append(extra)
            if extra.strip():
                expected.append((number, None))
    results: list[dict[str, Any]] = []
    body = (b"\r\n" if crlf else b"\n").join(lines)
    outcome = telemetry_backfill(carrier=mission.carrier, stream=io.BytesIO(body), on_result=results.append)
    assert [r["line"] for r in results] == [number for number, _ in expected]
    for result, (_, status) in zip(results, expected, strict=True):
        if status is not None:
            assert result["status"] == status, result
        if result["status"] == "refused":
            assert result["problem"]["status"] in (400, 413, 422) and result["problem"]["detail"]
    accepted = {r["event_id"] for r in results if r["status"] == "accepted"}
    assert accepted == good  # bytes never make an event
    assert outcome.accepted == len(good) and outcome.lines == len(results)
    assert good <= set(map(str, TelemetryWindowEvent.objects.values_list("event_id", flat=True)))
