"""Vehicle X.509-SVIDs through the real nginx (deploy/nginx/partner-api.conf), in front of daphne and gunicorn.

The edge's CA bundle is the union of the carriers' trust bundles; it forwards the
verified certificate and the application checks it against the sending carrier's
own bundle, trust domain and vehicle (docs/identity.md).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
import websockets

from missions.events import Actor
from missions.identity import services as identity_services
from missions.identity.selectors import REGISTRY_TTL_SECONDS
from missions.identity.svid import fingerprint_sha256
from missions.models import Carrier, Mission, TelemetrySample
from missions.partner import services as partner_services
from missions.partner.api.webhooks import webhook_sign
from tests.certificates import LOOPBACK_SAN, issue_certificate, pem_pair, write_pem
from tests.conftest import require_service
from tests.factories import CarrierFactory, MissionFactory, ShipmentFactory, VehicleFactory
from tests.partner.edge import NGINX, PROXY_SOURCE, EdgeCertificates, start_edge
from tests.partner.test_isolation import telemetry_event
from tests.servers import AppServer
from tests.svid import Issued, spiffe_ca, vehicle_svid

DOMAIN_A, DOMAIN_B = "carrier-a.example", "carrier-b.example"


@pytest.fixture(scope="module")
def app_server_env() -> dict[str, str]:
    return {"PARTNER_TRUSTED_PROXIES": f"{PROXY_SOURCE}/32"}


@dataclass
class SvidEdge:
    url: str
    server_ca: str
    directory: Path
    ca_a: Issued
    ca_b: Issued

    def files(self, issued: Issued) -> tuple[str, str]:
        name = uuid.uuid4().hex[:8]
        (self.directory / f"{name}.crt").write_text(issued.pem)
        (self.directory / f"{name}.key").write_bytes(issued.key_pem())
        return str(self.directory / f"{name}.crt"), str(self.directory / f"{name}.key")


@pytest.fixture
def svid_edge(app_server: AppServer, tmp_path: Path) -> Iterator[SvidEdge]:
    require_service("nginx", NGINX is not None)
    ca_a, ca_b = spiffe_ca(DOMAIN_A), spiffe_ca(DOMAIN_B)
    (tmp_path / "bundles.pem").write_text(ca_a.pem + ca_b.pem)
    server_ca, server_ca_key = issue_certificate("Edge CA", ca=True)
    write_pem(tmp_path / "server-ca", server_ca)
    server, server_key = issue_certificate("127.0.0.1", server_ca_key, server_ca.subject, san=LOOPBACK_SAN)
    write_pem(tmp_path / "server", server, server_key)
    rogue = spiffe_ca(DOMAIN_A, "Rogue")
    rogue_svid = vehicle_svid(rogue, DOMAIN_A, "TRK-A1")
    (tmp_path / "rogue.crt").write_text(rogue_svid.pem)
    (tmp_path / "rogue.key").write_bytes(rogue_svid.key_pem())
    certificates = EdgeCertificates(
        ca=str(tmp_path / "bundles.pem"),
        server=pem_pair(tmp_path, "server"),
        client=pem_pair(tmp_path, "rogue"),
        rogue=pem_pair(tmp_path, "rogue"),
    )
    nginx = start_edge(tmp_path / "edge", upstream=urlparse(app_server.url).netloc, certificates=certificates)
    try:
        yield SvidEdge(nginx.url, str(tmp_path / "server-ca.crt"), tmp_path, ca_a, ca_b)
    finally:
        nginx.stop()


def _carrier(edge: SvidEdge, slug: str, domain: str, ca: Issued) -> tuple[Carrier, Mission, str]:
    actor = Actor.system("test")
    carrier = CarrierFactory(slug=slug)
    identity_services.trust_domain_set(carrier_id=carrier.pk, name=domain, svid_required=True, actor=actor)
    identity_services.trust_bundle_add(carrier_id=carrier.pk, pem_text=ca.pem, actor=actor)
    vehicle = VehicleFactory(carrier=carrier, external_id="TRK-A1")
    mission = MissionFactory(carrier=carrier, shipment=ShipmentFactory(), vehicle=vehicle)
    secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=actor).secret
    return carrier, mission, secret


def _deliver(edge: SvidEdge, carrier: Carrier, secret: str, mission: Mission, svid: Issued | None) -> Any:
    body = json.dumps({"type": "telemetry", "data": {"events": [telemetry_event(mission)]}}).encode()
    webhook_id, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    return requests.post(
        f"{edge.url}/api/v1/webhooks/{carrier.slug}",
        data=body,
        headers={
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": webhook_sign(secret=secret, webhook_id=webhook_id, timestamp=stamp, body=body),
        },
        cert=edge.files(svid) if svid is not None else None,
        verify=edge.server_ca,
        timeout=10,
    )


@pytest.mark.django_db(transaction=True)
def test_webhook_telemetry_with_the_vehicles_svid_through_the_edge(svid_edge: SvidEdge) -> None:
    carrier, mission, secret = _carrier(svid_edge, "svid-a", DOMAIN_A, svid_edge.ca_a)
    _carrier(svid_edge, "svid-b", DOMAIN_B, svid_edge.ca_b)
    svid = vehicle_svid(svid_edge.ca_a, DOMAIN_A, "TRK-A1")
    response = _deliver(svid_edge, carrier, secret, mission, svid)
    assert response.status_code == 200, response.text
    assert TelemetrySample.objects.get(mission=mission).data["vehicle_cert"] == fingerprint_sha256(svid.certificate)

    # Carrier B's SVID verifies at the edge (its CA is in the union) but is not carrier A's.
    other = _deliver(svid_edge, carrier, secret, mission, vehicle_svid(svid_edge.ca_b, DOMAIN_B, "TRK-A1"))
    assert (other.status_code, other.json()["reason"]) == (403, "other-carrier")
    assert other.headers["Content-Type"].startswith("application/problem+json")
    # Another vehicle's SVID of the same carrier.
    mismatch = _deliver(svid_edge, carrier, secret, mission, vehicle_svid(svid_edge.ca_a, DOMAIN_A, "TRK-A2"))
    assert (mismatch.status_code, mismatch.json()["reason"]) == (403, "vehicle-mismatch")
    # No certificate at all.
    missing = _deliver(svid_edge, carrier, secret, mission, None)
    assert (missing.status_code, missing.json()["reason"]) == (401, "required")
    # An SVID from a CA in no bundle is refused by the edge itself.
    rogue = _deliver(svid_edge, carrier, secret, mission, vehicle_svid(spiffe_ca(DOMAIN_A, "R2"), DOMAIN_A, "TRK-A1"))
    assert rogue.status_code == 400 and rogue.json()["type"].endswith("client-certificate-invalid")
    assert TelemetrySample.objects.filter(mission=mission).count() == 1


@pytest.mark.django_db(transaction=True)
def test_websocket_stream_with_the_vehicles_svid_through_the_edge(svid_edge: SvidEdge, app_server: AppServer) -> None:
    from tests.telemetry.test_consumers import issue_token

    if app_server.kind != "daphne":
        pytest.skip("WebSockets are served by daphne (ASGI); gunicorn serves the HTTP paths")
    carrier, mission, _ = _carrier(svid_edge, "svid-ws", DOMAIN_A, svid_edge.ca_a)
    _carrier(svid_edge, "svid-ws-b", DOMAIN_B, svid_edge.ca_b)
    token = issue_token(carrier)

    async def stream(svid: Issued) -> tuple[list[dict[str, Any]], Any]:
        tls = ssl.create_default_context(cafile=svid_edge.server_ca)
        tls.load_cert_chain(*svid_edge.files(svid))
        url = svid_edge.url.replace("https://", "wss://") + "/ws/ingest/"
        received: list[dict[str, Any]] = []
        async with websockets.connect(
            url, ssl=tls, additional_headers={"Authorization": f"Bearer {token}"}, origin="https://127.0.0.1"
        ) as socket:
            try:
                while len(received) < 2:
                    received.append(json.loads(await asyncio.wait_for(socket.recv(), 10)))
                    if received[-1].get("type") == "ready":
                        await socket.send(json.dumps({"seq": 1, "events": [telemetry_event(mission)]}))
            except websockets.ConnectionClosed as closed:
                return received, closed.rcvd
        return received, None

    good = vehicle_svid(svid_edge.ca_a, DOMAIN_A, "TRK-A1")
    # The server keeps the trust registry for REGISTRY_TTL_SECONDS: the previous test's carrier may
    # still own this trust domain there until its copy is refreshed.
    deadline = time.monotonic() + 3 * REGISTRY_TTL_SECONDS
    frames, _ = asyncio.run(stream(good))
    while frames[0].get("problem", {}).get("reason") == "other-carrier" and time.monotonic() < deadline:
        time.sleep(0.5)
        frames, _ = asyncio.run(stream(good))
    assert frames[0].get("type") == "ready" and frames[1]["accepted"] == 1, frames
    assert TelemetrySample.objects.get(mission=mission).data["vehicle_cert"] == fingerprint_sha256(good.certificate)

    frames, close = asyncio.run(stream(vehicle_svid(svid_edge.ca_b, DOMAIN_B, "TRK-A1")))
    assert frames[0]["problem"]["reason"] == "other-carrier"
    assert close is not None and close.code == 4403
