"""Vehicle SVIDs on the WebSocket ingest stream (``ws/ingest/``), forwarded by the edge at the handshake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from missions.identity.svid import fingerprint_sha256
from missions.models import TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from tests.identity.conftest import BAD_SVIDS, Pki, refused_count
from tests.partner.test_isolation import telemetry_event
from tests.svid import Issued
from tests.telemetry.test_consumers import issue_token
from tms_console.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 10  # an upper bound for a message to arrive, never asserted as a timing
EDGE = "10.9.8.7"


@pytest.fixture(autouse=True)
def _setup(settings: Any) -> Iterator[None]:
    settings.PARTNER_TRUSTED_PROXIES = [f"{EDGE}/32"]
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        yield


def _stream(token: str, svid: Issued | None) -> WebsocketCommunicator:
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    if svid is not None:
        headers += [(b"x-ssl-client-cert", svid.escaped.encode()), (b"x-ssl-client-verify", b"SUCCESS")]
    comm = WebsocketCommunicator(application, "/ws/ingest/", headers=headers)
    # The socket peer is the edge; the application has not started yet, so it sees this scope.
    comm.scope["client"] = (EDGE, 40000)
    return comm


async def _refused_at_connect(comm: WebsocketCommunicator) -> tuple[dict[str, Any], dict[str, Any]]:
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    last = await comm.receive_json_from(timeout=TIMEOUT)
    close = await comm.receive_output(timeout=TIMEOUT)
    assert close["type"] == "websocket.close"
    return last, close


async def test_a_vehicle_streams_with_its_svid_and_the_fingerprint_is_stored(pki: Pki) -> None:
    from asgiref.sync import sync_to_async

    token = await sync_to_async(issue_token)(pki.carrier_a)
    svid = pki.svid()
    comm = _stream(token, svid)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "ready"
    await comm.send_json_to({"seq": 1, "events": [telemetry_event(pki.mission)]})
    ack = await comm.receive_json_from(timeout=TIMEOUT)
    assert (ack["ack"], ack["accepted"]) == (1, 1), ack
    await comm.disconnect()
    data = await sync_to_async(lambda: TelemetrySample.objects.get(mission=pki.mission).data)()
    assert data["vehicle_cert"] == fingerprint_sha256(svid.certificate)


@pytest.mark.parametrize("case", [c for c in BAD_SVIDS if c != "another vehicle's SVID"])
async def test_a_refused_svid_closes_the_stream_with_the_reason(pki: Pki, case: str) -> None:
    from asgiref.sync import sync_to_async

    make, reason = BAD_SVIDS[case]
    token = await sync_to_async(issue_token)(pki.carrier_a)
    before = refused_count(reason, "ws")
    last, close = await _refused_at_connect(_stream(token, make(pki)))
    assert last["problem"]["reason"] == reason
    assert last["problem"]["type"] == "/api/v1/problems/vehicle-identity-refused"
    assert close["code"] == 4403
    assert close["reason"] == f"vehicle-identity-refused: {reason}"
    assert refused_count(reason, "ws") == before + 1


async def test_no_svid_where_required_closes_4401(pki: Pki) -> None:
    from asgiref.sync import sync_to_async

    token = await sync_to_async(issue_token)(pki.carrier_a)
    last, close = await _refused_at_connect(_stream(token, None))
    assert last["problem"]["status"] == 401 and last["problem"]["reason"] == "required"
    assert (close["code"], close["reason"]) == (4401, "vehicle-identity-required: required")


async def test_telemetry_of_another_vehicle_is_refused_and_nothing_is_stored(pki: Pki) -> None:
    from asgiref.sync import sync_to_async

    make, reason = BAD_SVIDS["another vehicle's SVID"]
    token = await sync_to_async(issue_token)(pki.carrier_a)
    comm = _stream(token, make(pki))
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    assert (await comm.receive_json_from(timeout=TIMEOUT))["type"] == "ready"  # a valid SVID of carrier A
    await comm.send_json_to({"seq": 7, "events": [telemetry_event(pki.mission)]})
    refused = await comm.receive_json_from(timeout=TIMEOUT)
    assert refused["ack"] == 7 and refused["problem"]["reason"] == reason
    close = await comm.receive_output(timeout=TIMEOUT)
    assert (close["code"], close["reason"]) == (4403, f"vehicle-identity-refused: {reason}")
    assert await sync_to_async(TelemetryWindowEvent.objects.count)() == 0
