"""RFC 8705 through the real nginx from deploy/nginx/partner-api.conf, in front of daphne and of gunicorn.

Certificate-bound tokens (§3), and which certificate belongs to which client
(§2.1, ``tls_client_auth``): the edge trusts one CA bundle for every carrier,
so a certificate of another carrier from the same bundle must not get a token.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from missions.events import Actor
from missions.models import Carrier
from missions.models.partner import CertificateKind
from missions.partner import services as partner_services
from missions.partner.api.mtls import presented_thumbprint, x5t_s256
from missions.partner.services import IssuedClient
from tests.certificates import LOOPBACK_SAN, issue_certificate, pem_pair, write_pem
from tests.conftest import require_service
from tests.factories import CarrierFactory
from tests.partner.edge import NGINX, PROXY_SOURCE, EdgeCertificates, start_edge
from tests.servers import AppServer


def _gateway(carrier: str) -> tuple[x509.Name, list[x509.GeneralName]]:
    """The subject and SAN entries of a carrier's vehicle gateway certificate."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"Carrier {carrier.upper()}"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"vehicle-gateway-{carrier}"),
        ]
    )
    san: list[x509.GeneralName] = [
        x509.DNSName(f"gateway.carrier-{carrier}.example"),
        x509.UniformResourceIdentifier(f"spiffe://carrier-{carrier}.example/gateway"),
    ]
    return subject, san


@dataclass
class Edge:
    url: str
    ca: str
    client_a: tuple[str, str]
    client_b: tuple[str, str]
    cert_a: x509.Certificate
    cert_b: x509.Certificate
    rogue: tuple[str, str]


@pytest.fixture(scope="module")
def app_server_env() -> dict[str, str]:
    # The application believes the forwarded certificate only from the edge's source address.
    return {"PARTNER_TRUSTED_PROXIES": f"{PROXY_SOURCE}/32"}


@pytest.fixture
def edge(app_server: AppServer, tmp_path: Path) -> Iterator[Edge]:
    """nginx with deploy/nginx/partner-api.conf in front of the server, one CA bundle for every carrier."""
    require_service("nginx", NGINX is not None)
    ca_cert, ca_key = issue_certificate("Carrier Test CA", ca=True)
    write_pem(tmp_path / "carrier-ca", ca_cert)
    server_cert, server_key = issue_certificate("127.0.0.1", ca_key, ca_cert.subject, san=LOOPBACK_SAN)
    write_pem(tmp_path / "server", server_cert, server_key)
    subject_a, san_a = _gateway("a")
    cert_a, key_a = issue_certificate(subject_a, ca_key, ca_cert.subject, san=san_a)
    write_pem(tmp_path / "client-a", cert_a, key_a)
    subject_b, san_b = _gateway("b")
    cert_b, key_b = issue_certificate(subject_b, ca_key, ca_cert.subject, san=san_b)
    write_pem(tmp_path / "client-b", cert_b, key_b)
    rogue_ca, rogue_key = issue_certificate("Rogue CA", ca=True)
    rogue_cert, rogue_cert_key = issue_certificate("rogue", rogue_key, rogue_ca.subject)
    write_pem(tmp_path / "rogue", rogue_cert, rogue_cert_key)
    certificates = EdgeCertificates(
        ca=str(tmp_path / "carrier-ca.crt"),
        server=pem_pair(tmp_path, "server"),
        client=pem_pair(tmp_path, "client-a"),
        rogue=pem_pair(tmp_path, "rogue"),
    )
    nginx = start_edge(tmp_path / "edge", upstream=urlparse(app_server.url).netloc, certificates=certificates)
    try:
        yield Edge(
            url=nginx.url,
            ca=certificates.ca,
            client_a=certificates.client,
            client_b=pem_pair(tmp_path, "client-b"),
            cert_a=cert_a,
            cert_b=cert_b,
            rogue=certificates.rogue,
        )
    finally:
        nginx.stop()


def _token(edge: Edge, issued: IssuedClient, cert: tuple[str, str] | None) -> requests.Response:
    return requests.post(
        f"{edge.url}/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(issued.client_id, issued.client_secret),
        cert=cert,
        verify=edge.ca,
        timeout=10,
    )


def _caps(edge: Edge, token: str, cert: tuple[str, str] | None, **headers: str) -> requests.Response:
    return requests.get(
        f"{edge.url}/api/v1/capabilities",
        headers={"Authorization": f"Bearer {token}", **headers},
        cert=cert,
        verify=edge.ca,
        timeout=10,
    )


def _subject_dn(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _register(
    carrier: Carrier, kind: str = "", value: str = "", scopes: str = "tender:read missions:read"
) -> IssuedClient:
    return partner_services.partner_client_create(
        carrier_id=carrier.pk,
        name=f"{carrier.slug} gateway",
        scopes=scopes.split(),
        actor=Actor.system("test"),
        certificate_kind=kind,
        certificate_value=value,
    )


@pytest.fixture
def mtls_client(db: Any, edge: Edge) -> IssuedClient:
    """Carrier A's client: its carrier requires mTLS and it registered the subject DN of gateway A's certificate."""
    carrier = CarrierFactory(slug="mtls-carrier", require_mtls=True)
    return _register(carrier, CertificateKind.SUBJECT_DN, _subject_dn(edge.cert_a))


@pytest.mark.django_db(transaction=True)
def test_token_is_bound_to_the_certificate_it_was_issued_over(edge: Edge, mtls_client: IssuedClient) -> None:
    issued = _token(edge, mtls_client, edge.client_a)
    assert issued.status_code == 200, issued.text
    expected = x5t_s256(edge.cert_a.public_bytes(serialization.Encoding.DER))
    assert issued.json()["cnf"] == {"x5t#S256": expected}
    token = issued.json()["access_token"]
    assert _caps(edge, token, edge.client_a).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_bound_token_with_another_certificate_or_none_is_refused(edge: Edge, mtls_client: IssuedClient) -> None:
    token = _token(edge, mtls_client, edge.client_a).json()["access_token"]
    for cert in (edge.client_b, None):
        response = _caps(edge, token, cert)
        assert response.status_code == 401
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.django_db(transaction=True)
def test_forged_certificate_header_through_the_proxy_is_overwritten(edge: Edge, mtls_client: IssuedClient) -> None:
    token = _token(edge, mtls_client, edge.client_a).json()["access_token"]
    forged = quote(edge.cert_a.public_bytes(serialization.Encoding.PEM).decode())
    response = _caps(edge, token, None, **{"X-SSL-Client-Cert": forged, "X-SSL-Client-Verify": "SUCCESS"})
    assert response.status_code == 401


@pytest.mark.django_db(transaction=True)
def test_forwarded_certificate_is_ignored_when_not_from_the_proxy(
    edge: Edge, mtls_client: IssuedClient, app_server: AppServer
) -> None:
    token = _token(edge, mtls_client, edge.client_a).json()["access_token"]
    forged = quote(edge.cert_a.public_bytes(serialization.Encoding.PEM).decode())
    # Straight to the application from 127.0.0.1, which is not a configured proxy address.
    response = requests.get(
        f"{app_server.url}/api/v1/capabilities",
        timeout=10,
        headers={"Authorization": f"Bearer {token}", "X-SSL-Client-Cert": forged, "X-SSL-Client-Verify": "SUCCESS"},
    )
    assert response.status_code == 401


def _assert_invalid_client(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()
    # RFC 6749 §5.2: the challenge names the scheme the client authenticates with, never Bearer.
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.django_db(transaction=True)
def test_carrier_requiring_mtls_gets_no_token_without_certificate(edge: Edge, mtls_client: IssuedClient) -> None:
    _assert_invalid_client(_token(edge, mtls_client, None))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("kind", "value_of"),
    [
        (CertificateKind.SUBJECT_DN, lambda cert: _subject_dn(cert)),
        (CertificateKind.SAN_DNS, lambda cert: cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
         .value.get_values_for_type(x509.DNSName)[0]),
        (CertificateKind.SAN_URI, lambda cert: cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
         .value.get_values_for_type(x509.UniformResourceIdentifier)[0]),
        (CertificateKind.X5T_S256, lambda cert: cert.fingerprint(hashes.SHA256()).hex(":")),
    ],
    ids=["subject-dn", "san-dns", "san-uri", "thumbprint"],
)  # fmt: skip
def test_certificate_of_another_carrier_from_the_same_ca_is_invalid_client(
    edge: Edge, kind: str, value_of: Any
) -> None:
    # Both gateways' certificates verify against the one CA bundle at the edge; each carrier
    # registered its own (the thumbprint as openssl prints it: colon-separated hex).
    issued_a = _register(CarrierFactory(slug="carrier-a", require_mtls=True), kind, value_of(edge.cert_a))
    _register(CarrierFactory(slug="carrier-b", require_mtls=True), kind, value_of(edge.cert_b))
    _assert_invalid_client(_token(edge, issued_a, edge.client_b))
    own = _token(edge, issued_a, edge.client_a)
    assert own.status_code == 200, own.text
    assert own.json()["cnf"] == {"x5t#S256": x5t_s256(edge.cert_a.public_bytes(serialization.Encoding.DER))}
    # A token of A's client is no good over B's certificate either (RFC 8705 §3).
    assert _caps(edge, own.json()["access_token"], edge.client_b).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_tls_client_auth_with_the_certificate_alone(edge: Edge, mtls_client: IssuedClient) -> None:
    def token_by_certificate(cert: tuple[str, str] | None) -> requests.Response:
        # RFC 8705 §2: client_id in the body, no secret; the certificate authenticates the client.
        return requests.post(
            f"{edge.url}/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": mtls_client.client_id},
            cert=cert,
            verify=edge.ca,
            timeout=10,
        )

    issued = token_by_certificate(edge.client_a)
    assert issued.status_code == 200, issued.text
    assert issued.json()["cnf"] == {"x5t#S256": x5t_s256(edge.cert_a.public_bytes(serialization.Encoding.DER))}
    assert _caps(edge, issued.json()["access_token"], edge.client_a).status_code == 200
    _assert_invalid_client(token_by_certificate(edge.client_b))
    _assert_invalid_client(token_by_certificate(None))


@pytest.mark.django_db(transaction=True)
def test_registered_certificate_is_required_even_where_the_carrier_does_not_require_mtls(edge: Edge) -> None:
    issued = _register(CarrierFactory(slug="careful-carrier"), CertificateKind.SUBJECT_DN, _subject_dn(edge.cert_a))
    _assert_invalid_client(_token(edge, issued, None))
    _assert_invalid_client(_token(edge, issued, edge.client_b))
    assert _token(edge, issued, edge.client_a).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_client_without_a_registered_certificate_gets_no_token_once_its_carrier_requires_mtls(edge: Edge) -> None:
    carrier = CarrierFactory(slug="late-carrier")
    issued = _register(carrier)
    assert _token(edge, issued, edge.client_a).status_code == 200
    Carrier.objects.filter(pk=carrier.pk).update(require_mtls=True)
    # Any certificate from the bundle would do for a client that registered none: none does.
    _assert_invalid_client(_token(edge, issued, edge.client_a))


@pytest.mark.django_db(transaction=True)
def test_oauth_metadata_is_served_through_the_edge(edge: Edge) -> None:
    response = requests.get(
        f"{edge.url}/.well-known/oauth-authorization-server", verify=edge.ca, timeout=10, allow_redirects=False
    )
    assert response.status_code == 200, response.text
    assert "tls_client_auth" in response.json()["token_endpoint_auth_methods_supported"]
    assert response.json()["tls_client_certificate_bound_access_tokens"] is True


@pytest.mark.django_db(transaction=True)
def test_certificate_from_an_unknown_ca_is_refused_at_the_edge(edge: Edge, mtls_client: IssuedClient) -> None:
    assert _token(edge, mtls_client, edge.rogue).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_carrier_without_mtls_works_through_the_edge_unbound(edge: Edge) -> None:
    issued = _register(CarrierFactory(slug="plain-carrier"))
    response = _token(edge, issued, None)
    assert response.status_code == 200 and "cnf" not in response.json()
    assert _caps(edge, response.json()["access_token"], None).status_code == 200


@pytest.mark.django_db
def test_thumbprint_header_is_ignored_from_untrusted_addresses(settings: Any) -> None:
    cert, _ = issue_certificate("x")
    pem = quote(cert.public_bytes(serialization.Encoding.PEM).decode())
    meta = {"REMOTE_ADDR": "203.0.113.9", "HTTP_X_SSL_CLIENT_CERT": pem, "HTTP_X_SSL_CLIENT_VERIFY": "SUCCESS"}
    settings.PARTNER_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert presented_thumbprint(meta) is None
    settings.PARTNER_TRUSTED_PROXIES = ["203.0.113.0/24"]
    assert presented_thumbprint(meta) == x5t_s256(cert.public_bytes(serialization.Encoding.DER))
    assert presented_thumbprint({**meta, "HTTP_X_SSL_CLIENT_VERIFY": "FAILED:unable to verify"}) is None


@pytest.mark.django_db
def test_a_proxy_that_only_forwards_verified_certificates_needs_no_verification_header(settings: Any) -> None:
    """An edge in verify mode (an AWS load balancer) forwards only a certificate it verified and says nothing
    more: with the verification header set empty, the forwarded leaf from a trusted proxy is taken as is."""
    cert, _ = issue_certificate("alb")
    pem = quote(cert.public_bytes(serialization.Encoding.PEM).decode())
    settings.PARTNER_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.PARTNER_CLIENT_CERT_HEADER = "HTTP_X_AMZN_MTLS_CLIENTCERT_LEAF"
    meta = {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_AMZN_MTLS_CLIENTCERT_LEAF": pem}
    assert presented_thumbprint(meta) is None  # the default still asks for the verification header
    settings.PARTNER_CLIENT_VERIFY_HEADER = ""
    assert presented_thumbprint(meta) == x5t_s256(cert.public_bytes(serialization.Encoding.DER))
    assert presented_thumbprint({**meta, "REMOTE_ADDR": "203.0.113.9"}) is None  # still only from the proxy
