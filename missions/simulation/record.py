"""The fleet's own record of what it did: the ground truth the SLIs are recomputed from.

Written only by the simulated fleet and on-call (``fleet``), from the simulated clock and the
fleet's own decisions. The product's state is read in two places only, both checked: the id a
service hands back for what the fleet created, and the instants of the product's own automation
(when the gap detector raised, when the runbook failed over or saw comms back), which the record
keeps next to the window the fleet expects them in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class MissionRecord:
    """One mission as the fleet drove it."""

    mission_id: int
    carrier: str  # slug
    truck: str
    fault: str  # "" for none
    delivery_window_end: datetime
    started_at: datetime
    # Times of the samples the truck sent (each once, duplicates left out), in order.
    samples: list[datetime] = field(default_factory=list)
    completed_at: datetime | None = None
    outcome: str = ""  # completed | failed | handed_over | "" while running
    human_intervened: bool = False
    replaces: int | None = None  # a fallback mission: the mission it took the load over from

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = len(self.samples)
        for key in ("delivery_window_end", "started_at", "completed_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass(frozen=True)
class ApiCall:
    """One call the console made to the push carrier's API, as the carrier and the network saw it.

    ``status`` is what the carrier answered; None when the call never reached it (the proxy
    blackholed or reset the connection). ``fault`` is the window the call was made in ("" for none).
    """

    at: datetime
    what: str
    status: int | None
    fault: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def counted(self) -> bool:
        """In the error rate: everything but a documented refusal (4xx other than 429), which is the caller's."""
        return self.status is None or not (400 <= self.status < 500) or self.status == 429

    @property
    def breaker_failure(self) -> bool:
        """A failure for the circuit breaker: no answer, 5xx or 429 (a refusal means the carrier is up)."""
        return self.status is None or self.status >= 500 or self.status == 429

    @property
    def slow(self) -> bool:
        """Over the latency target: delayed by a slow window, or waited out to the timeout in a blackhole."""
        return self.fault in ("slow", "blackhole")

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "what": self.what, "status": self.status, "fault": self.fault}


@dataclass
class IncidentRecord:
    """An incident the fleet caused, and what it expects the product to do about it."""

    kind: str  # lost_comms | degraded_autonomy | emergency_stop | ota_failure | carrier_api_down
    carrier: str
    mission_id: int | None  # None for a carrier's incident (its API down)
    caused_at: datetime
    # When the product must open it: exactly at ``caused_at`` for a reported exception; for a
    # silence, at the first gap check at least ``gap_seconds`` after the last sample.
    trigger_earliest: datetime
    trigger_latest: datetime
    resolved_by: str  # oncall | recovery (the runbook, when comms came back)
    comms_back_at: datetime | None = None
    fails_over: bool = False
    # Filled as the run goes: the product's incident and the instants it recorded, once checked.
    incident_id: int | None = None
    triggered_at: datetime | None = None
    failover_at: datetime | None = None
    resolved_at: datetime | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        return data


@dataclass
class Record:
    """Everything the fleet did in one run."""

    start: datetime
    end: datetime
    gap_seconds: int
    carriers: dict[str, int] = field(default_factory=dict)  # slug -> product id
    missions: dict[int, MissionRecord] = field(default_factory=dict)
    incidents: list[IncidentRecord] = field(default_factory=list)
    # Product refusals of something the fleet did (a transition, a booking): listed in the report.
    refusals: list[str] = field(default_factory=list)
    samples_sent: int = 0
    duplicates_sent: int = 0
    # Instants at which the fleet ran the SLA evaluation (the ends of the compared windows).
    checkpoints: list[datetime] = field(default_factory=list)
    # Credits: month -> carrier -> breaches the fleet's SLA manager confirmed (sli names).
    confirmed_breaches: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # The push carrier's API: its slug, every call made to it, and the fault windows it went through.
    api_carrier: str = ""
    api_calls: list[ApiCall] = field(default_factory=list)
    api_rebooked: int = 0  # loads cancelled and booked again because their tender never reached the carrier
    api_windows: list[dict[str, str]] = field(default_factory=list)
