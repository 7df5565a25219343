"""Evidence over HTTP: checkpoint, proofs, mission bundles (partner and console), the console page."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from missions.evidence import merkle, services
from missions.evidence.bundle import bundle_verify
from missions.evidence.checkpoint import checkpoint_open
from missions.evidence.keys import Ed25519Signer, KeyRing
from missions.evidence.note import NoteVerifier
from missions.evidence.signing import evidence_signer_reset
from missions.models import Carrier, Mission
from missions.models.evidence import TransparencyLogEntry
from tests.conftest import verified_client
from tests.evidence.test_persistence import ORIGIN, key_in_environment, mission_with_evidence, noise
from tests.factories import MissionFactory
from tests.partner.conftest import api_client, assert_problem, fetch_token, issue_client

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "verify_evidence.py"


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[Ed25519Signer]:
    monkeypatch.delenv("EVIDENCE_PUBLIC_KEYS", raising=False)
    yield key_in_environment(monkeypatch)
    evidence_signer_reset()


@pytest.fixture
def mission_a(carrier_a: Carrier) -> Mission:
    noise(2)
    mission = mission_with_evidence(carrier=carrier_a)
    noise(3)
    return mission


@pytest.fixture
def api_a(carrier_a: Carrier) -> APIClient:
    return api_client(fetch_token(issue_client(carrier_a))["access_token"])


@pytest.fixture
def api_b(carrier_b: Carrier) -> APIClient:
    return api_client(fetch_token(issue_client(carrier_b))["access_token"])


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


# ---------------------------------------------------------------- checkpoint and proofs


@pytest.mark.django_db
def test_checkpoint_as_json_and_as_the_bare_signed_note(
    api_a: APIClient,
    mission_a: Mission,
    signing_key: Ed25519Signer,
) -> None:
    assert_problem(api_a.get("/api/v1/evidence/checkpoint"), 404)
    services.checkpoint_issue()
    response = api_a.get("/api/v1/evidence/checkpoint")
    assert response.status_code == 200
    body = response.json()
    assert (body["origin"], body["tree_size"], body["key_id"]) == (ORIGIN, 9, signing_key.key_id)
    opened = checkpoint_open(body["note"], [NoteVerifier.for_key(ORIGIN, signing_key.public_key_bytes)])
    assert opened.root_hash == _b64(body["root_hash"])

    text = api_a.get("/api/v1/evidence/checkpoint", HTTP_ACCEPT="text/plain")
    assert text.status_code == 200
    assert text["Content-Type"].startswith("text/plain")
    assert text.content.decode() == body["note"]
    assert text.content.decode().startswith(f"{ORIGIN}\n9\n")


@pytest.mark.django_db
def test_inclusion_and_consistency_proofs_verify_against_checkpoints(api_a: APIClient, mission_a: Mission) -> None:
    old = services.checkpoint_issue()
    noise(4)
    new = services.checkpoint_issue()
    assert old is not None and new is not None and (old.tree_size, new.tree_size) == (9, 13)
    for index in (0, 5, 8):
        response = api_a.get("/api/v1/evidence/proofs/inclusion", {"index": index, "tree_size": 13})
        assert response.status_code == 200, response.content
        body = response.json()
        stored = bytes(TransparencyLogEntry.objects.get(index=index).leaf_hash)
        assert _b64(body["leaf_hash"]) == stored
        merkle.verify_inclusion(index, 13, stored, [_b64(h) for h in body["inclusion_proof"]], bytes(new.root_hash))
    response = api_a.get("/api/v1/evidence/proofs/consistency", {"first": 9, "second": 13})
    assert response.status_code == 200
    proof = [_b64(h) for h in response.json()["consistency_proof"]]
    merkle.verify_consistency(9, 13, proof, bytes(old.root_hash), bytes(new.root_hash))
    # A proof for another tree size does not verify against this checkpoint.
    other = api_a.get("/api/v1/evidence/proofs/consistency", {"first": 8, "second": 13}).json()
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(
            9, 13, [_b64(h) for h in other["consistency_proof"]], bytes(old.root_hash), bytes(new.root_hash)
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("inclusion", {"index": 0}),
        ("inclusion", {"index": "x", "tree_size": 3}),
        ("inclusion", {"index": "1.0", "tree_size": 3}),
        ("inclusion", {"index": -1, "tree_size": 3}),
        ("consistency", {"first": 0, "second": 3}),
        ("consistency", {"first": 1, "second": 2**62 + 1}),
    ],
)
def test_malformed_proof_requests_are_400_problems(api_a: APIClient, path: str, params: dict[str, Any]) -> None:
    noise(3)
    assert_problem(api_a.get(f"/api/v1/evidence/proofs/{path}", params), 400, "validation-error")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("inclusion", {"index": 5, "tree_size": 3}),
        ("inclusion", {"index": 0, "tree_size": 99}),
        ("consistency", {"first": 4, "second": 3}),
        ("consistency", {"first": 1, "second": 99}),
    ],
)
def test_proofs_the_log_cannot_give_are_422_problems(api_a: APIClient, path: str, params: dict[str, Any]) -> None:
    # Well-formed (the schema admits them) but beyond this log's size or inconsistent with each other.
    noise(3)
    assert_problem(api_a.get(f"/api/v1/evidence/proofs/{path}", params), 422, "proof-unavailable")


@pytest.mark.django_db
def test_the_log_is_not_public(client: Client, outsider: User) -> None:
    assert_problem(client.get("/api/v1/evidence/checkpoint"), 401)
    assert_problem(verified_client(outsider).get("/api/v1/evidence/checkpoint"), 403)
    unverified = Client()
    unverified.force_login(outsider)
    assert_problem(unverified.get("/api/v1/evidence/proofs/consistency", {"first": 1, "second": 1}), 401)


# ---------------------------------------------------------------- bundles


def _run_verifier(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}  # no Django, no project path
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.django_db
def test_a_bundle_exported_over_the_api_verifies_in_process_and_with_the_standalone_script(
    api_a: APIClient,
    mission_a: Mission,
    signing_key: Ed25519Signer,
    tmp_path: Path,
) -> None:
    response = api_a.get(f"/api/v1/evidence/missions/{mission_a.pk}/bundle")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert f'filename="evidence-mission-{mission_a.pk}.json"' in response["Content-Disposition"]
    bundle = response.content
    report = bundle_verify(bundle, KeyRing([signing_key.public_key_bytes]))
    assert report.ok, report.summary()
    assert f"bundle is about urn:tms-console:mission:{mission_a.pk}" in report.checked

    (tmp_path / "bundle.json").write_bytes(bundle)
    (tmp_path / "log.pub.pem").write_bytes(signing_key.public_pem())
    result = _run_verifier(["bundle.json", "--trusted-keys", "log.pub.pem"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: evidence bundle verifies")
    assert "statement 3 is leaf 5 of the log at size 9" in result.stdout

    # One changed byte in the exported file: the script names the failure and exits 1.
    tampered = bundle.replace(b'"leaf_index": 3', b'"leaf_index": 4', 1)
    assert tampered != bundle
    (tmp_path / "tampered.json").write_bytes(tampered)
    result = _run_verifier(["tampered.json", "--trusted-keys", "log.pub.pem"], tmp_path)
    assert result.returncode == 1
    assert "inclusion proof for leaf 4 does not match checkpoint root at size 9" in result.stderr


@pytest.mark.django_db
def test_a_carrier_gets_only_its_own_mission_bundles(
    api_a: APIClient, api_b: APIClient, mission_a: Mission, carrier_a: Carrier
) -> None:
    assert_problem(api_b.get(f"/api/v1/evidence/missions/{mission_a.pk}/bundle"), 404, "not-found")
    assert_problem(api_a.get("/api/v1/evidence/missions/999999/bundle"), 404, "not-found")
    # The scope is needed too.
    narrow = api_client(fetch_token(issue_client(carrier_a, scopes="tender:read"))["access_token"])
    assert_problem(narrow.get(f"/api/v1/evidence/missions/{mission_a.pk}/bundle"), 403, "insufficient-scope")


@pytest.mark.django_db
def test_a_mission_without_evidence_is_a_409_problem(api_a: APIClient, carrier_a: Carrier) -> None:
    mission = MissionFactory(carrier=carrier_a)
    assert_problem(api_a.get(f"/api/v1/evidence/missions/{mission.pk}/bundle"), 409, "conflict")


@pytest.mark.django_db
def test_console_users_download_bundles_with_a_verified_session(
    readonly: User,
    outsider: User,
    mission_a: Mission,
    signing_key: Ed25519Signer,
) -> None:
    response = verified_client(readonly).get(f"/api/v1/evidence/missions/{mission_a.pk}/bundle")
    assert response.status_code == 200
    assert bundle_verify(response.content, KeyRing([signing_key.public_key_bytes])).ok
    assert_problem(verified_client(outsider).get(f"/api/v1/evidence/missions/{mission_a.pk}/bundle"), 403)
    password_only = Client()
    password_only.force_login(readonly)
    assert_problem(password_only.get(f"/api/v1/evidence/missions/{mission_a.pk}/bundle"), 401)


# ---------------------------------------------------------------- console


@pytest.mark.django_db
def test_the_console_evidence_page_lists_verified_attestations_and_offers_the_bundle(
    readonly: User, outsider: User, mission_a: Mission
) -> None:
    services.checkpoint_issue()
    client = verified_client(readonly)
    page = client.get(f"/missions/{mission_a.pk}/evidence/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count(">verified</span>") == 4
    assert "not verified" not in html
    for index in (2, 3, 4, 5):
        assert f'<td class="mono">{index}</td>' in html
    assert f"/missions/{mission_a.pk}/evidence/bundle/" in html

    download = client.get(f"/missions/{mission_a.pk}/evidence/bundle/")
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="evidence-mission-{mission_a.pk}.json"'
    assert verified_client(outsider).get(f"/missions/{mission_a.pk}/evidence/").status_code == 403


@pytest.mark.django_db
def test_the_mission_page_fragment_renders_through_its_template_tag(mission_a: Mission) -> None:
    from django.template import Context, Template

    html = Template("{% load evidence_tags %}{% mission_attestations_card mission %}").render(
        Context({"mission": mission_a})
    )
    assert 'id="mission-attestations"' in html
    assert html.count("<tr>") == 5  # header + four attestations
    assert f"/missions/{mission_a.pk}/evidence/" in html
