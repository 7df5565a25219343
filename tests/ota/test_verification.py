"""TUF metadata refreshed with ngclient and vehicle software checked against it: each good path and refusal."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
import time_machine
from django.utils import timezone

from missions.models import AuditEvent, Carrier, SoftwareStatus, Vehicle, VehicleSoftware
from missions.ota.services import ota_repository_refresh, vehicle_software_check
from missions.ota.tuf_client import RefreshFailed, repository_refresh
from tests.ota.conftest import configure
from tests.tuf_repository import TufRepository, in_days

pytestmark = pytest.mark.django_db


def check(vehicle: Vehicle, version: str) -> VehicleSoftware:
    return vehicle_software_check(vehicle_id=vehicle.pk, version=version, reported_at=timezone.now())


def refused_events(vehicle: Vehicle) -> list[dict[str, object]]:
    return [
        e.data
        for e in AuditEvent.objects.filter(action="vehicle.software_refused", subject_id=vehicle.pk).order_by("id")
    ]


def test_a_signed_version_verifies(carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository) -> None:
    repo = ota_repository_refresh(repository_id=configure(carrier_a, image_repo).pk)
    assert repo.refresh_ok and repo.versions == {"root": 1, "timestamp": 1, "snapshot": 1, "targets": 1}
    assert set(repo.targets) == {"av-stack/4.2.0", "av-stack/4.2.1"}
    row = check(vehicle, "av-stack/4.2.1")
    assert row.status == SoftwareStatus.VERIFIED and row.release_counter == 42 and row.reason_code == ""
    event = AuditEvent.objects.get(action="vehicle.software_verified", subject_id=vehicle.pk)
    assert event.data == {"vehicle_id": "TRK-0007", "version": "av-stack/4.2.1", "release_counter": 42}


def test_an_unsigned_version_is_refused(carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository) -> None:
    ota_repository_refresh(repository_id=configure(carrier_a, image_repo).pk)
    row = check(vehicle, "av-stack/9.9.9-hotfix")
    assert row.status == SoftwareStatus.REFUSED and row.reason_code == "not_a_target"
    assert row.verified_version == ""
    assert refused_events(vehicle)[0]["code"] == "not_a_target"
    # The same refusal checked again records nothing new.
    check(vehicle, "av-stack/9.9.9-hotfix")
    assert len(refused_events(vehicle)) == 1


def test_without_metadata_nothing_verifies(carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository) -> None:
    assert check(vehicle, "av-stack/4.2.1").reason_code == "no_metadata"  # no repository configured
    configure(carrier_a, image_repo)
    assert check(vehicle, "av-stack/4.2.1").reason_code == "no_metadata"  # configured, never refreshed


def test_a_target_dropped_by_new_metadata_is_refused_at_refresh(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository
) -> None:
    repo = configure(carrier_a, image_repo)
    ota_repository_refresh(repository_id=repo.pk)
    assert check(vehicle, "av-stack/4.2.0").status == SoftwareStatus.VERIFIED
    image_repo.remove_target("av-stack/4.2.0")
    image_repo.publish()
    ota_repository_refresh(repository_id=repo.pk)  # re-checks the fleet
    row = VehicleSoftware.objects.get(vehicle=vehicle)
    assert row.status == SoftwareStatus.REFUSED and row.reason_code == "not_a_target"


@pytest.mark.parametrize("role_expired", ["timestamp", "targets"])
def test_expired_metadata_is_refused(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository, role_expired: str
) -> None:
    repo = configure(carrier_a, image_repo)
    past = in_days(-1)
    image_repo.publish(**{f"{role_expired}_expires": past})  # type: ignore[arg-type]
    repo = ota_repository_refresh(repository_id=repo.pk)
    assert not repo.refresh_ok and repo.failure_kind == "expired" and role_expired in repo.failure_reason
    assert repo.verified_at is None and repo.targets == {}
    failed = AuditEvent.objects.get(action="ota_repository.refresh_failed")
    assert failed.data["kind"] == "expired" and failed.data["security"] is True
    assert check(vehicle, "av-stack/4.2.1").reason_code == "metadata_expired"


def test_verified_metadata_that_expires_later_verifies_nothing(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository
) -> None:
    ota_repository_refresh(repository_id=configure(carrier_a, image_repo).pk)
    with time_machine.travel(timezone.now() + timedelta(days=2)):  # past the timestamp's one day
        row = check(vehicle, "av-stack/4.2.1")
    assert row.status == SoftwareStatus.REFUSED and row.reason_code == "metadata_expired"


def test_replayed_older_metadata_is_a_rollback(carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository) -> None:
    repo = configure(carrier_a, image_repo)
    ota_repository_refresh(repository_id=repo.pk)
    older = image_repo.saved()
    image_repo.add_target("av-stack/4.3.0", release_counter=43)
    image_repo.publish()
    assert ota_repository_refresh(repository_id=repo.pk).versions["timestamp"] == 2
    image_repo.restore(older)  # validly signed, not expired, but version 1 after version 2
    repo = ota_repository_refresh(repository_id=repo.pk)
    assert not repo.refresh_ok and repo.failure_kind == "rollback"
    assert repo.versions["timestamp"] == 2  # what was trusted stays trusted
    row = check(vehicle, "av-stack/4.3.0")
    assert row.status == SoftwareStatus.REFUSED and row.reason_code == "metadata_refused"
    assert "rollback" in row.reason.lower()


def test_a_rollback_is_refused_by_a_process_whose_cache_is_new(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository
) -> None:
    """Another worker pod, or a wiped cache volume: ngclient starts from the trusted root alone and would take
    the replayed version 1; the versions the database recorded refuse it."""
    from missions.ota.services import cache_dir

    repo = configure(carrier_a, image_repo)
    ota_repository_refresh(repository_id=repo.pk)
    older = image_repo.saved()
    image_repo.add_target("av-stack/4.3.0", release_counter=43)
    image_repo.publish()
    assert ota_repository_refresh(repository_id=repo.pk).versions["timestamp"] == 2
    image_repo.restore(older)
    shutil.rmtree(cache_dir(repo))
    repo = ota_repository_refresh(repository_id=repo.pk)
    assert not repo.refresh_ok and repo.failure_kind == "rollback"
    assert "timestamp version 1 after version 2" in repo.failure_reason
    assert repo.versions["timestamp"] == 2
    assert check(vehicle, "av-stack/4.3.0").status == SoftwareStatus.REFUSED


def test_metadata_signed_by_a_wrong_key_is_refused(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository
) -> None:
    repo = configure(carrier_a, image_repo)
    image_repo.add_target("av-stack/6.6.6")
    image_repo.publish(wrong_key_for="targets")
    repo = ota_repository_refresh(repository_id=repo.pk)
    assert not repo.refresh_ok and repo.failure_kind == "bad_signature"
    assert "targets" in repo.failure_reason
    row = check(vehicle, "av-stack/6.6.6")
    assert row.status == SoftwareStatus.REFUSED and row.reason_code == "metadata_refused"


def test_a_root_of_another_repository_verifies_nothing(tmp_path: Path, image_repo: TufRepository) -> None:
    stranger = TufRepository(tmp_path / "other")
    with pytest.raises(RefreshFailed) as failed:
        repository_refresh(
            metadata_url=image_repo.url, trusted_root=stranger.root_json().encode(), cache_dir=tmp_path / "c"
        )
    assert failed.value.kind == "bad_signature"


def test_a_release_counter_going_down_is_a_rollback(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository
) -> None:
    ota_repository_refresh(repository_id=configure(carrier_a, image_repo).pk)
    assert check(vehicle, "av-stack/4.2.1").status == SoftwareStatus.VERIFIED
    row = check(vehicle, "av-stack/4.2.0")  # signed, but release 41 after 42
    assert row.status == SoftwareStatus.REFUSED and row.reason_code == "rollback"
    assert row.verified_version == "av-stack/4.2.1"


def test_the_director_must_assign_the_image_to_the_vehicle(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository, tmp_path: Path
) -> None:
    ota_repository_refresh(repository_id=configure(carrier_a, image_repo).pk)
    director = TufRepository(tmp_path / "director")
    director.add_target("av-stack/4.2.1", vehicle_ids=["TRK-0001"])
    director.publish()
    director_repo = configure(carrier_a, director, role="director")
    ota_repository_refresh(repository_id=director_repo.pk)
    row = check(vehicle, "av-stack/4.2.1")
    assert row.status == SoftwareStatus.REFUSED and row.reason_code == "director_mismatch"
    # Assigned, but with other bytes than the image repository signed: still refused.
    director.add_target("av-stack/4.2.1", vehicle_ids=["TRK-0007"], data=b"something else")
    director.publish()
    ota_repository_refresh(repository_id=director_repo.pk)
    assert VehicleSoftware.objects.get(vehicle=vehicle).reason_code == "director_mismatch"
    director.add_target("av-stack/4.2.1", vehicle_ids=["TRK-0007"])
    director.publish()
    ota_repository_refresh(repository_id=director_repo.pk)
    assert VehicleSoftware.objects.get(vehicle=vehicle).status == SoftwareStatus.VERIFIED


@pytest.fixture
def loopback_server(image_repo: TufRepository) -> Iterator[str]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(image_repo.dir))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_metadata_over_loopback_http(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository, loopback_server: str
) -> None:
    from missions.ota.services import ota_repository_configure
    from tests.ota.conftest import ADMIN

    repo = ota_repository_configure(
        carrier_id=carrier_a.pk,
        role="image",
        metadata_url=loopback_server,
        trusted_root=image_repo.root_json(),
        actor=ADMIN,
    )
    assert ota_repository_refresh(repository_id=repo.pk).refresh_ok
    assert check(vehicle, "av-stack/4.2.1").status == SoftwareStatus.VERIFIED


def test_an_unreachable_repository_keeps_the_verified_metadata(
    carrier_a: Carrier, vehicle: Vehicle, image_repo: TufRepository
) -> None:
    repo = configure(carrier_a, image_repo)
    ota_repository_refresh(repository_id=repo.pk)
    for name in ("timestamp.json", "snapshot.json", "targets.json"):
        (image_repo.dir / name).unlink()
    repo = ota_repository_refresh(repository_id=repo.pk)
    assert not repo.refresh_ok and repo.failure_kind == "unreachable"
    assert not AuditEvent.objects.get(action="ota_repository.refresh_failed").data["security"]
    assert check(vehicle, "av-stack/4.2.1").status == SoftwareStatus.VERIFIED
