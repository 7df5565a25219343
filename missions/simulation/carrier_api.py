"""The carrier API in the loop: the carrier simulator behind a fault proxy, its fault windows, its calls.

One autonomous carrier of the run is a *push* carrier: the console sends it each tender over its
REST API (``missions.tendering``: OAuth2 token, Idempotency-Key, retries, circuit breaker), and
the carrier's own dispatcher (the fleet) answers the tenders that reached its books through the
partner API. The API is the project's carrier simulator (``answer="hold"``: it books tenders and
leaves the answering to the fleet), served on a thread of this process, and every connection the
console opens to it goes through a ``FaultProxy`` whose faults follow the profile's windows in
simulated time: slow (each direction delayed), blackhole (accepted, never answered), reset.

The fleet's record of the calls is its own: every request that reached the carrier, with the
instant and the status the simulator answered (its request log), and, at each instant of a
blackhole or reset window, the connections the proxy accepted (each one call that failed without
reaching the carrier; a failed connection is never reused). From those, with the breaker rule the
contract publishes (``breaker_failure_threshold`` consecutive failures open the circuit; a success
closes it), the fleet knows when the carrier's "API down" incident must open.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from missions.choices import CircuitState
from missions.models import Carrier, CarrierCircuit
from missions.simulation import profile as p
from missions.simulation.record import ApiCall
from missions.simulators.carrier.server import CarrierSimulator
from missions.simulators.carrier.state import SimConfig
from missions.simulators.faultproxy import FaultProxy

# Windows of one run are kept this far apart, so the circuit has closed and on-call has resolved the
# incident of one outage before the next begins.
WINDOW_GAP = timedelta(hours=3)


@dataclass(frozen=True)
class ApiWindow:
    kind: str
    start: datetime
    end: datetime

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "start": self.start.isoformat(), "end": self.end.isoformat()}


def windows_draw(profile: p.Profile, start: datetime, end: datetime, rng: random.Random) -> list[ApiWindow]:
    """The run's fault windows: the profile's forced ones, then each kind per day with its probability."""
    windows = [
        ApiWindow(kind, start + timedelta(hours=hours), start + timedelta(hours=hours, minutes=minutes))
        for kind, hours, minutes in profile.api_forced
    ]
    day = start
    while day < end:
        for kind in p.API_FAULT_KINDS:
            if rng.random() >= profile.api_fault_rates.get(kind, 0.0):
                continue
            minutes = rng.randint(*profile.api_fault_minutes)
            at = day + timedelta(minutes=rng.randrange(0, 24 * 60 - minutes))
            window = ApiWindow(kind, at, at + timedelta(minutes=minutes))
            clear = all(window.end + WINDOW_GAP <= w.start or w.end + WINDOW_GAP <= window.start for w in windows)
            if window.end <= end and clear:
                windows.append(window)
        day += timedelta(days=1)
    return sorted((w for w in windows if w.start < end), key=lambda w: w.start)


class CarrierApi:
    """The push carrier's API for one run: simulator, proxy, windows, and the calls seen so far."""

    def __init__(self, *, profile: p.Profile, windows: list[ApiWindow], seed: int) -> None:
        self.profile = profile
        self.windows = windows
        self._secret = secrets.token_urlsafe(24)
        self.sim = CarrierSimulator(SimConfig(answer="hold", secret_for=self._secret_for, seed=seed)).start()
        self.proxy = FaultProxy("127.0.0.1", self.sim.port).start()
        self.carrier: Carrier | None = None
        self.active: ApiWindow | None = None
        self._seen_requests = 0
        self._accepted = 0
        # The breaker as the contract describes it, kept from the calls alone.
        self._failures = 0
        self._open = False

    def _secret_for(self, slug: str) -> str:
        """Each carrier's client secret at the simulator (the run's own, never stored in the repo)."""
        return hashlib.sha256(f"{self._secret}:{slug}".encode()).hexdigest()

    @property
    def slug(self) -> str:
        return self.carrier.slug if self.carrier is not None else ""

    def attach(self, carrier: Carrier) -> None:
        """Point the carrier's API settings at the proxy (what its integration team configures)."""
        base = f"{self.proxy.url}/carriers/{carrier.slug}"
        Carrier.objects.filter(pk=carrier.pk).update(
            api_base_url=base,
            api_token_url=f"{base}/oauth/token",
            api_client_id=carrier.slug,
            api_client_secret=self._secret_for(carrier.slug),
            api_timeout_seconds=self.profile.api_timeout_seconds,
            breaker_failure_threshold=self.profile.breaker_failure_threshold,
            breaker_reset_seconds=self.profile.breaker_reset_seconds,
        )
        carrier.refresh_from_db()
        self.carrier = carrier

    # --- fault windows ---------------------------------------------------------------------

    def next_switch(self, now: datetime) -> datetime | None:
        """The next instant after ``now`` at which a window opens or closes."""
        edges = [t for w in self.windows for t in (w.start, w.end) if t > now]
        return min(edges) if edges else None

    def apply(self, now: datetime) -> None:
        """Put the proxy in the state the windows give for ``now``."""
        window = next((w for w in self.windows if w.start <= now < w.end), None)
        if window == self.active:
            return
        self.proxy.heal()
        if window is not None:
            if window.kind == p.API_SLOW:
                self.proxy.set_latency(self.profile.api_slow_seconds)
            elif window.kind == p.API_BLACKHOLE:
                self.proxy.set_blackhole(True)
            else:
                self.proxy.resetting(True)
        self.active = window

    # --- what the fleet sees ------------------------------------------------------------------

    def observe(self, now: datetime) -> tuple[list[ApiCall], datetime | None]:
        """The calls made at ``now`` (the instant that just ended), and when one of them opened the circuit.

        Call once per instant, after everything it caused has run and before the windows move on.
        """
        calls: list[ApiCall] = []
        requests, self._seen_requests = self.sim.requests_since(self._seen_requests)
        for entry in requests:
            if entry["tenant"] != self.slug:
                continue
            at = datetime.fromtimestamp(entry["at"], UTC)
            fault = self.active.kind if self.active is not None and self.active.kind == p.API_SLOW else ""
            calls.append(ApiCall(at=at, what=f"{entry['method']} {entry['path']}", status=entry["status"], fault=fault))
        accepted = self.proxy.stats().connections_accepted
        if self.active is not None and self.active.kind in (p.API_BLACKHOLE, p.API_RESET):
            # Nothing reaches the carrier in these windows: each connection is one failed call.
            calls.extend(ApiCall(at=now, what="(no answer)", status=None, fault=self.active.kind)
                         for _ in range(accepted - self._accepted))  # fmt: skip
        self._accepted = accepted
        tripped: datetime | None = None
        for call in calls:
            if call.breaker_failure:
                self._failures += 1
                if not self._open and self._failures >= self.profile.breaker_failure_threshold:
                    self._open, tripped = True, call.at
            else:
                self._failures, self._open = 0, False
        return calls, tripped

    def holds(self, tender_id: int) -> bool:
        """The carrier has the tender in its books, unanswered (it reached the carrier)."""
        held = self.sim.tender_by_id(tender_id)
        return held is not None and held.tenant == self.slug and held.status == "pending"

    def circuit_closed(self) -> bool:
        """What the dispatcher sees on the carrier's page: tendering to it goes on only when closed."""
        assert self.carrier is not None
        state = CarrierCircuit.objects.filter(carrier_id=self.carrier.pk).values_list("state", flat=True).first()
        return state in (None, CircuitState.CLOSED)

    def close(self) -> None:
        self.proxy.stop()
        self.sim.stop()
