"""The partner API's capabilities report the calling carrier's feature flags, and only its own."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from django.conf import settings
from rest_framework.test import APIClient

from missions import flags, services
from missions.events import Actor
from missions.models import Carrier
from missions.partner.services import IssuedClient
from tests.partner.conftest import api_client, assert_problem, fetch_token

pytestmark = pytest.mark.django_db


def reported(client: APIClient, **headers: str) -> dict[str, bool]:
    response = client.get("/api/v1/capabilities", **headers)
    assert response.status_code == 200, response.content
    return {item["key"]: item["enabled"] for item in response.json()["feature_flags"]}


def test_each_carrier_sees_its_own_flags(carrier_a: Carrier, api_a: APIClient, api_b: APIClient) -> None:
    nothing = dict.fromkeys(flags.CARRIER_FLAGS, False)
    assert reported(api_a) == nothing and reported(api_b) == nothing
    for key in (flags.NIGHT_OPERATIONS, flags.TELEMETRY_V2):
        services.carrier_flag_set(
            carrier_id=carrier_a.pk, key=key, enabled=True, actor=Actor.system("t"), reason="pilot", confirmed=True
        )
    assert reported(api_a) == {**nothing, "night_operations": True, "telemetry_schema_v2": True}
    # Carrier B's answer is unchanged, whatever it claims to be.
    assert reported(api_b) == nothing
    assert reported(api_b, HTTP_X_CARRIER="carrier-a") == nothing
    assert reported(api_b, QUERY_STRING="carrier=carrier-a") == nothing


def test_each_flag_comes_with_its_label_and_effect_in_the_documented_shape(api_a: APIClient) -> None:
    body = api_a.get("/api/v1/capabilities").json()
    assert [item["key"] for item in body["feature_flags"]] == list(flags.CARRIER_FLAGS)
    for item in body["feature_flags"]:
        spec = flags.CARRIER_FLAGS[item["key"]]
        assert (item["label"], item["effect"]) == (spec.label, spec.effect)
    schema = yaml.safe_load((Path(settings.BASE_DIR) / "docs" / "openapi.yaml").read_text())
    components = schema["components"]["schemas"]
    item_schema = components["CarrierFeatureFlag"]
    assert "feature_flags" in components["Capabilities"]["required"]
    for item in body["feature_flags"]:
        jsonschema.validate(item, item_schema)


def test_no_flags_without_valid_credentials(partner_a: IssuedClient) -> None:
    assert_problem(api_client("").get("/api/v1/capabilities"), 401)
    assert_problem(api_client(partner_a.client_secret).get("/api/v1/capabilities"), 401)
    token = fetch_token(partner_a)["access_token"]
    assert_problem(api_client(token).post("/api/v1/capabilities", {}, format="json"), 405)
