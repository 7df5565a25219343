"""Mutual TLS to a carrier: the client presents its certificate; without one the carrier refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from missions.choices import TenderStatus
from missions.models import Shipment
from missions.models.outbound import OutboundCall
from missions.tendering.carrier_client import tls_context
from tests.certificates import LOOPBACK_SAN, issue_certificate, pem_pair, write_pem
from tests.tendering.conftest import SimFactory, push_carrier
from tests.tendering.helpers import tender_to

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, str]:
    ca_cert, ca_key = issue_certificate("Test carrier CA", ca=True)
    server_cert, server_key = issue_certificate(
        "127.0.0.1", ca_key, ca_cert.subject, san=LOOPBACK_SAN, usage=[ExtendedKeyUsageOID.SERVER_AUTH]
    )
    client_cert, client_key = issue_certificate(
        "tms-console", ca_key, ca_cert.subject, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    write_pem(tmp_path / "ca", ca_cert, ca_key)
    write_pem(tmp_path / "server", server_cert, server_key)
    write_pem(tmp_path / "client", client_cert, client_key)
    ca_path, _ = pem_pair(tmp_path, "ca")
    server_crt, server_k = pem_pair(tmp_path, "server")
    client_crt, client_k = pem_pair(tmp_path, "client")
    return {
        "ca": ca_path,
        "server_cert": server_crt,
        "server_key": server_k,
        "client_cert": client_crt,
        "client_key": client_k,
    }


def test_tender_over_mutual_tls(make_sim: SimFactory, shipment: Shipment, pki: dict[str, str], settings: Any) -> None:
    settings.CARRIER_CA_BUNDLE = pki["ca"]
    sim = make_sim(tls_cert=pki["server_cert"], tls_key=pki["server_key"], client_ca=pki["ca"])
    assert sim.url.startswith("https://")
    carrier = push_carrier(
        sim, name="Auto Secure", api_client_cert_path=pki["client_cert"], api_client_key_path=pki["client_key"]
    )

    tender = tender_to(shipment, carrier)

    assert tender.status == TenderStatus.ACCEPTED


def test_without_a_client_certificate_the_carrier_refuses(
    make_sim: SimFactory, shipment: Shipment, pki: dict[str, str], settings: Any
) -> None:
    settings.CARRIER_CA_BUNDLE = pki["ca"]
    sim = make_sim(tls_cert=pki["server_cert"], tls_key=pki["server_key"], client_ca=pki["ca"])
    carrier = push_carrier(sim, name="Auto Secure")

    tender = tender_to(shipment, carrier)

    tender.refresh_from_db()
    assert tender.status == TenderStatus.FAILED
    assert sim.tender_count() == 0
    assert not OutboundCall.objects.filter(carrier=carrier, ok=True).exists()


def test_one_tls_context_per_configuration_made_again_when_a_file_changes(pki: dict[str, str]) -> None:
    """Loading the system's CA store costs tens of milliseconds: clients of one configuration share a context,
    and a rotated client certificate (or a new CA bundle) is picked up by the next client."""
    first = tls_context(ca_bundle=pki["ca"], cert=pki["client_cert"], key=pki["client_key"])
    assert tls_context(ca_bundle=pki["ca"], cert=pki["client_cert"], key=pki["client_key"]) is first
    plain = tls_context(ca_bundle="", cert="", key="")
    # The carriers' CA is trusted on top of the system store only where it was configured.
    assert plain is not first and first.cert_store_stats()["x509_ca"] == plain.cert_store_stats()["x509_ca"] + 1
    rotated = Path(pki["client_cert"])
    rotated.write_text(rotated.read_text() + "\n")  # a new file at the same path
    again = tls_context(ca_bundle=pki["ca"], cert=pki["client_cert"], key=pki["client_key"])
    assert again is not first
    with pytest.raises(FileNotFoundError):
        tls_context(ca_bundle="", cert=str(rotated.with_name("missing.pem")), key="")
