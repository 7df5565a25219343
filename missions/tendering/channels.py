"""Tender channels other than the carrier's REST API (EDI X12 today).

Tendering sits below the capabilities that speak other protocols, so it never
imports them: they register a channel here (from ``AppConfig.ready``) and
dispatch asks ``channel_for(carrier)`` before it falls back to the REST client
or to the pull model. A channel delivers a PENDING tender and returns the
reference the tender is known by on the wire, or raises ``CarrierError`` (the
tender fails and the waterfall moves on, as for an API carrier).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from missions.models import Carrier, Tender


@dataclass(frozen=True)
class TenderChannel:
    name: str
    applies: Callable[[Carrier], bool]
    deliver: Callable[[Tender], str]
    cancel: Callable[[Tender], str]


_channels: dict[str, TenderChannel] = {}


def channel_register(channel: TenderChannel) -> None:
    """Declare a channel (idempotent per name: ``ready`` may run twice in tests)."""
    _channels[channel.name] = channel


def channel_for(carrier: Carrier) -> TenderChannel | None:
    """The channel a carrier's tenders go through, or None (REST API or pull)."""
    for channel in _channels.values():
        if channel.applies(carrier):
            return channel
    return None
