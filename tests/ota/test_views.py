"""The console page where an administrator trusts a carrier's root: clear errors, nothing changed on a refusal."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from missions.models import Carrier, CarrierOtaRepository
from missions.telemetry.normalize import TelemetryEvent, event_validate
from tests.conftest import verified_client
from tests.telemetry.conftest import make_event
from tests.tuf_repository import TufRepository

pytestmark = pytest.mark.django_db


def post(admin: User, carrier: Carrier, **fields: str) -> tuple[int, str]:
    body = {"carrier": str(carrier.pk), "role": "image", "metadata_url": "https://tuf.example/metadata/", **fields}
    response = verified_client(admin).post("/partners/ota/configure/", body)
    return response.status_code, response.content.decode()


@pytest.mark.parametrize(
    ("root", "message"),
    [
        ("{not json", "Not JSON"),
        (json.dumps({"signed": {"_type": "root"}, "signatures": []}), "Not TUF metadata"),
    ],
)
def test_bad_root_is_refused_next_to_its_field(admin_user: User, carrier_a: Carrier, root: str, message: str) -> None:
    status, page = post(admin_user, carrier_a, trusted_root=root)
    assert status == 400 and message in page
    assert not CarrierOtaRepository.objects.exists()


def test_targets_metadata_or_an_unsigned_root_is_refused(admin_user: User, carrier_a: Carrier, tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = TufRepository(tmp_path / "r")
    repo.publish()
    status, page = post(admin_user, carrier_a, trusted_root=(repo.dir / "targets.json").read_text())
    assert status == 400 and "not root metadata" in page
    unsigned = json.loads(repo.root_json())
    unsigned["signatures"] = []
    status, page = post(admin_user, carrier_a, trusted_root=json.dumps(unsigned))
    assert status == 400 and "not signed by its own root keys" in page
    status, page = post(admin_user, carrier_a, trusted_root=repo.root_json(), metadata_url="ftp://x/")
    assert status == 400 and "Use an https, http, file URL" in page
    assert not CarrierOtaRepository.objects.exists()


def test_a_good_root_is_trusted_and_shown(admin_user: User, carrier_a: Carrier, tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = TufRepository(tmp_path / "r")
    status, _ = post(admin_user, carrier_a, trusted_root=repo.root_json())
    assert status == 302
    stored = CarrierOtaRepository.objects.get(carrier=carrier_a)
    page = verified_client(admin_user).get("/partners/ota/").content.decode()
    assert stored.root_sha256[:12] in page and "never" in page


def test_the_page_is_for_administrators(dispatcher: User) -> None:
    assert verified_client(dispatcher).get("/partners/ota/").status_code == 403


def test_software_version_in_telemetry(carrier_a: Carrier) -> None:
    from tests.factories import MissionFactory

    mission = MissionFactory(carrier=carrier_a)
    ev = event_validate(make_event(mission, software_version="av-stack/4.2.1"))
    assert isinstance(ev, TelemetryEvent) and ev.software_version == "av-stack/4.2.1"
    assert "software_version" not in ev.to_wire()  # a vehicle's version lives in the event log, not the window
    assert event_validate(make_event(mission, software_version="")) == (
        "software_version: expected 1 to 200 characters"
    )
    assert event_validate(make_event(mission, software_version=4.2)) == (
        "software_version: expected a string, got a number"
    )
    assert "cannot be stored" in str(event_validate(make_event(mission, software_version="a\x00b")))
