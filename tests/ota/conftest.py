"""Fixtures for the OTA tests: a carrier's TUF image repository in a temp dir and a fresh metadata cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from missions.events import Actor
from missions.models import Carrier, CarrierOtaRepository, Vehicle
from missions.ota.services import ota_repository_configure
from tests.factories import VehicleFactory
from tests.tuf_repository import TufRepository

ADMIN = Actor.system("test-admin")


@pytest.fixture(autouse=True)
def _ota_cache(settings: Any, tmp_path: Path) -> None:
    settings.OTA_CACHE_DIR = str(tmp_path / "ota-cache")


@pytest.fixture
def image_repo(tmp_path: Path) -> TufRepository:
    repo = TufRepository(tmp_path / "image")
    repo.add_target("av-stack/4.2.0", release_counter=41)
    repo.add_target("av-stack/4.2.1", release_counter=42)
    repo.publish()
    return repo


def configure(carrier: Carrier, repo: TufRepository, role: str = "image") -> CarrierOtaRepository:
    return ota_repository_configure(
        carrier_id=carrier.pk, role=role, metadata_url=repo.url, trusted_root=repo.root_json(), actor=ADMIN
    )


@pytest.fixture
def vehicle(carrier_a: Carrier) -> Vehicle:
    return VehicleFactory(carrier=carrier_a, external_id="TRK-0007")


@pytest.fixture(autouse=True)
def _fresh_software_cache() -> None:
    # Primary keys are reused between tests that flush the database: start each with an empty cache.
    from missions.telemetry import ingest

    ingest._SOFTWARE_SEEN.clear()
