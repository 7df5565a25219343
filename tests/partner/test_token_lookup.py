"""The partner token look-up gives the objects the ORM's select_related gives, relations included."""

from __future__ import annotations

import hashlib

import pytest
from django.db.models import Model
from oauth2_provider.models import AccessToken, Application

from missions.models import Carrier
from missions.models.partner import PartnerClient, TokenCertificateBinding
from missions.partner.api.token_lookup import token_with_client
from tests.partner.conftest import fetch_token, issue_client

pytestmark = pytest.mark.django_db


def _fields(obj: Model) -> dict[str, object]:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def _orm(checksum: str) -> AccessToken:
    return AccessToken.objects.select_related("application__partner_client__carrier", "certificate_binding").get(
        token_checksum=checksum
    )


def _checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def test_a_partner_token_with_its_binding_matches_the_orm(carrier_a: Carrier) -> None:
    carrier_a.operating_regions = ["TX", "OK"]  # a JSON column: decoded by the field's converter
    carrier_a.save()
    token = fetch_token(issue_client(carrier_a), scope="tender:read")["access_token"]
    access = AccessToken.objects.get(token_checksum=_checksum(token))
    TokenCertificateBinding.objects.create(access_token=access, x5t_s256="A" * 43)
    expected = _orm(_checksum(token))

    found = token_with_client(_checksum(token))

    assert found is not None
    assert _fields(found) == _fields(expected)
    assert _fields(found.application) == _fields(expected.application)
    assert _fields(found.application.partner_client) == _fields(expected.application.partner_client)
    assert _fields(found.application.partner_client.carrier) == _fields(expected.application.partner_client.carrier)
    assert found.application.partner_client.carrier.operating_regions == ["TX", "OK"]
    assert _fields(found.certificate_binding) == _fields(expected.certificate_binding)
    assert found.expires.tzinfo is not None and not found.is_expired()
    # Everything came with the token: reading the relations runs no query.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert found.application.partner_client.carrier.pk == carrier_a.pk
        assert found.certificate_binding.x5t_s256 == "A" * 43
    assert len(queries) == 0


def test_absent_relations_are_cached_as_absent(carrier_a: Carrier) -> None:
    token = fetch_token(issue_client(carrier_a), scope="tender:read")["access_token"]
    found = token_with_client(_checksum(token))
    assert found is not None
    assert getattr(found, "certificate_binding", None) is None
    # An application that is no partner client's (a console OAuth app).
    other = Application.objects.create(
        name="not a partner", client_type="confidential", authorization_grant_type="client-credentials"
    )
    access = AccessToken.objects.create(application=other, token="plain-token", expires=found.expires, scope="x")
    plain = token_with_client(access.token_checksum)
    assert plain is not None and plain.application is not None
    with pytest.raises(PartnerClient.DoesNotExist):
        plain.application.partner_client  # noqa: B018


def test_an_unknown_token_is_none() -> None:
    assert token_with_client(_checksum("no such token")) is None
