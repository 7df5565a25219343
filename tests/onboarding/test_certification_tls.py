"""Certification of sandboxes that authenticate the console by mutual TLS or SPIFFE SVID.

The simulator serves https with a server certificate from the carrier's CA (or an X.509-SVID of its
trust domain) and requires the console's client certificate; the profile holds the CA or trust
bundle and, for SVIDs, the sandbox's SPIFFE ID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.contrib.auth.models import User

from missions.events import Actor
from missions.models import Carrier, CarrierProfile, CertificationRun
from missions.onboarding import certification
from missions.simulators.carrier import CarrierSimulator, SimConfig
from tests.certificates import LOOPBACK_SAN, issue_certificate, pem_pair, write_pem
from tests.onboarding.conftest import sandbox_configure
from tests.svid import spiffe_ca, vehicle_svid

pytestmark = pytest.mark.django_db

SANDBOX_ID = "spiffe://lonestar.example/sandbox"


@pytest.fixture
def pki(tmp_path: Path, settings: Any) -> dict[str, str]:
    """The carrier's CA and its sandbox's server certificate; the console's CA and client certificate."""
    carrier_ca, carrier_ca_key = issue_certificate("Lonestar sandbox CA", ca=True)
    server, server_key = issue_certificate(
        "127.0.0.1", carrier_ca_key, carrier_ca.subject, san=LOOPBACK_SAN, usage=[ExtendedKeyUsageOID.SERVER_AUTH]
    )
    console_ca, console_ca_key = issue_certificate("TMS console CA", ca=True)
    client, client_key = issue_certificate(
        "tms-console", console_ca_key, console_ca.subject, usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    write_pem(tmp_path / "server", server, server_key)
    write_pem(tmp_path / "client", client, client_key)
    write_pem(tmp_path / "console-ca", console_ca)
    settings.CERTIFICATION_CLIENT_CERT_FILE, settings.CERTIFICATION_CLIENT_KEY_FILE = pem_pair(tmp_path, "client")
    server_crt, server_k = pem_pair(tmp_path, "server")
    return {
        "carrier_ca_pem": carrier_ca.public_bytes(serialization.Encoding.PEM).decode(),
        "server_cert": server_crt,
        "server_key": server_k,
        "console_ca": str(tmp_path / "console-ca.crt"),
    }


SimStarter = Callable[..., CarrierSimulator]


@pytest.fixture
def tls_sandbox() -> Iterator[SimStarter]:
    started: list[CarrierSimulator] = []

    def start(**tls: str) -> CarrierSimulator:
        sim = CarrierSimulator(SimConfig(policy={"accept": 1.0}, seed=7, vehicles=["SIM-001"], **tls)).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def _certify(carrier: Carrier, manager: User, sim: CarrierSimulator, **profile: str) -> CertificationRun:
    CarrierProfile.objects.filter(carrier=carrier).update(sandbox_api_url=sim.url, **profile)
    sandbox_configure(sim, carrier)
    run = certification.certification_start(carrier_id=carrier.pk, actor=Actor.for_user(manager))
    return certification.certification_run(run.pk)


def _results(run: CertificationRun) -> dict[str, str]:
    return {c["name"]: c["status"] for c in run.checks}


def test_an_mtls_sandbox_is_certified_over_mutual_tls_with_its_own_ca(
    carrier: Carrier, manager: User, pki: dict[str, str], tls_sandbox: SimStarter
) -> None:
    sim = tls_sandbox(tls_cert=pki["server_cert"], tls_key=pki["server_key"], client_ca=pki["console_ca"])
    assert sim.url.startswith("https://")

    run = _certify(carrier, manager, sim, auth_method="mtls", sandbox_ca_pem=pki["carrier_ca_pem"])

    checks = {c["name"]: c for c in run.checks}
    assert run.status == "passed", {n: (c["status"], c.get("detail")) for n, c in checks.items()}
    assert [c["name"] for c in run.checks][:3] == ["auth_token", "mtls_required", "server_identity"]
    assert checks["mtls_required"]["detail"] == "refused in the TLS handshake without a client certificate"
    assert checks["server_identity"]["detail"] == "server certificate verified (issued by CN=Lonestar sandbox CA)"


def test_an_mtls_sandbox_that_takes_calls_without_a_client_certificate_fails_that_check(
    carrier: Carrier, manager: User, pki: dict[str, str], tls_sandbox: SimStarter
) -> None:
    sim = tls_sandbox(tls_cert=pki["server_cert"], tls_key=pki["server_key"])  # no client CA: no mTLS

    run = _certify(carrier, manager, sim, auth_method="mtls", sandbox_ca_pem=pki["carrier_ca_pem"])

    failed = {n for n, status in _results(run).items() if status == "failed"}
    mtls = next(c for c in run.checks if c["name"] == "mtls_required")
    assert failed == {"mtls_required"}
    assert mtls["detail"] == "Without a client certificate the sandbox answered 200."
    assert mtls["hint"].startswith("Require a client certificate in the TLS handshake")


def test_a_sandbox_whose_certificate_is_not_from_the_ca_given_fails_every_call(
    carrier: Carrier, manager: User, pki: dict[str, str], tls_sandbox: SimStarter
) -> None:
    sim = tls_sandbox(tls_cert=pki["server_cert"], tls_key=pki["server_key"], client_ca=pki["console_ca"])
    stranger, _ = issue_certificate("Some other CA", ca=True)

    run = _certify(
        carrier,
        manager,
        sim,
        auth_method="mtls",
        sandbox_ca_pem=stranger.public_bytes(serialization.Encoding.PEM).decode(),
    )

    token = next(c for c in run.checks if c["name"] == "auth_token")
    assert run.status == "failed" and token["status"] == "failed"
    assert "CERTIFICATE_VERIFY_FAILED" in token["detail"] and "valid TLS" in token["hint"]


@pytest.fixture
def svid_server(tmp_path: Path) -> dict[str, str]:
    ca = spiffe_ca("lonestar.example")
    leaf = vehicle_svid(ca, "lonestar.example", "sandbox", uris=[SANDBOX_ID])
    (tmp_path / "svid.crt").write_text(leaf.pem)
    (tmp_path / "svid.key").write_bytes(leaf.key_pem())
    return {"bundle": ca.pem, "cert": str(tmp_path / "svid.crt"), "key": str(tmp_path / "svid.key")}


@pytest.mark.parametrize(
    ("declared", "status", "detail"),
    [
        (SANDBOX_ID, "passed", f"SVID {SANDBOX_ID}, verified against the trust bundle"),
        (
            "spiffe://lonestar.example/production",
            "failed",
            f"The server certificate names ['{SANDBOX_ID}'], not spiffe://lonestar.example/production.",
        ),
    ],
)
def test_an_svid_sandbox_must_present_the_spiffe_id_declared(
    carrier: Carrier,
    manager: User,
    pki: dict[str, str],
    svid_server: dict[str, str],
    tls_sandbox: SimStarter,
    declared: str,
    status: str,
    detail: str,
) -> None:
    sim = tls_sandbox(tls_cert=svid_server["cert"], tls_key=svid_server["key"], client_ca=pki["console_ca"])

    run = _certify(
        carrier,
        manager,
        sim,
        auth_method="spiffe_svid",
        sandbox_ca_pem=svid_server["bundle"],
        sandbox_spiffe_id=declared,
    )

    identity = next(c for c in run.checks if c["name"] == "server_identity")
    assert (identity["status"], identity["detail"]) == (status, detail)
    assert {n for n, s in _results(run).items() if s != "passed"} == (
        {"server_identity"} if status == "failed" else set()
    )
