"""An EDI trading partner on the local-folder transport, in a throw-away EDI_DIR."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from missions.choices import CarrierKind
from missions.models import Carrier
from missions.models.edi import EdiPartner
from missions.simulators.edi_carrier import EdiCarrierSimulator
from tests.factories import CarrierFactory


@pytest.fixture
def edi_dir(tmp_path: Path) -> Iterator[Path]:
    with override_settings(EDI_DIR=tmp_path / "edi", EDI_SENDER_QUALIFIER="ZZ", EDI_SENDER_ID="TMSCONSOLE"):
        yield tmp_path / "edi"


@pytest.fixture
def edi_carrier(db: Any, edi_dir: Path) -> Carrier:
    carrier = CarrierFactory(
        name="Red River",
        slug="red-river",
        kind=CarrierKind.HUMAN_DRIVEN,
        max_autonomy_level=0,
        is_fallback=True,
        fallback_rate_usd_per_km=Decimal("2.35"),
        operating_regions=[],
    )
    EdiPartner.objects.create(
        carrier=carrier, interchange_id="REDRIVER", scac="RRFL", transactions=["204", "990", "214", "997"]
    )
    return carrier


@pytest.fixture
def edi_sim(edi_carrier: Carrier, edi_dir: Path) -> EdiCarrierSimulator:
    folder = edi_dir / edi_carrier.slug
    return EdiCarrierSimulator(
        reads_from=folder / "outbound", writes_to=folder / "inbound", interchange_id="REDRIVER", step_seconds=0.0
    )
