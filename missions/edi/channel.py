"""Registers EDI as a tender channel: a carrier whose EDI profile exchanges 204s is tendered over X12."""

from __future__ import annotations

from missions.edi import services
from missions.tendering.channels import TenderChannel, channel_register

EDI_CHANNEL = TenderChannel(
    name="edi",
    applies=services.carrier_tenders_over_edi,
    deliver=services.tender_send_204,
    cancel=services.tender_cancel_204,
)


def register() -> None:
    channel_register(EDI_CHANNEL)
