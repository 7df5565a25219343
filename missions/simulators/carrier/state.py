"""The simulated carrier's memory: answer policy, injected faults, tenders and idempotency keys.

Everything here is guarded by one lock, because the HTTP server answers each
request on its own thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

ANSWERS = ("accept", "reject", "counter")
STATUS_FOR = {"accept": "accepted", "reject": "rejected", "counter": "countered"}


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def policy_parse(text: str) -> dict[str, float]:
    """``accept=0.7,reject=0.2,counter=0.1`` -> weights; missing answers weigh 0."""
    weights = dict.fromkeys(ANSWERS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if name not in weights:
            raise ValueError(f"unknown answer '{name}' in policy (use accept, reject, counter)")
        weight = float(value)
        if weight < 0:
            raise ValueError("policy weights cannot be negative")
        weights[name] = weight
    if sum(weights.values()) <= 0:
        raise ValueError("a policy needs at least one positive weight")
    return weights


@dataclass
class Faults:
    """Faults injected into the simulator's answers, switchable at run time."""

    latency_ms: int = 0
    timeout: bool = False  # hold the request past any sane client timeout, then drop it
    error_burst: int = 0  # the next N API calls answer 503
    malformed: bool = False  # answer 200 with a JSON body that breaks the contract
    not_json: bool = False  # answer 200 with a body that is not JSON at all
    refuse: bool = False  # close the connection without an answer
    lose_tenders: bool = False  # acknowledge POST /tenders (201) but keep nothing: GET answers 404
    # Certification's broken modes (the conformance checks each must catch):
    non_idempotent: bool = False  # a resend with the same key and body is taken as a new tender
    wrong_schema: bool = False  # tender answers (submit, status) leave out updated_at, which the contract requires
    tokens_unchecked: bool = False  # any bearer token passes: expired, revoked or forged
    unsigned_webhooks: bool = False  # the sandbox's test webhooks go out without a signature
    clock_offset_seconds: float = 0.0  # the sandbox's telemetry is stamped this far off the true time

    def update(self, data: dict[str, Any]) -> None:
        """Change the faults named in ``data``; an unknown one or a wrong value is refused (ValueError)."""
        for key, value in data.items():
            if key == "latency_ms":
                self.latency_ms = max(0, int(value))
            elif key == "error_burst":
                self.error_burst = max(0, int(value))
            elif key == "clock_offset_seconds":
                if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) > 86_400:
                    raise ValueError("clock_offset_seconds is a number of seconds, at most a day either way")
                self.clock_offset_seconds = float(value)
            elif key in _SWITCHES:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
                setattr(self, key, value)
            else:
                raise ValueError(f"unknown fault '{key}'")


_SWITCHES = (
    "timeout",
    "malformed",
    "not_json",
    "refuse",
    "lose_tenders",
    "non_idempotent",
    "wrong_schema",
    "tokens_unchecked",
    "unsigned_webhooks",
)


@dataclass
class SandboxCredentials:
    """What the carrier's integration staff put into its sandbox from the console's portal."""

    client_id: str = ""
    client_secret: str = ""
    webhook_secret: str = ""
    telemetry_rate_hz: float = 1.0

    def update(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if key in ("client_id", "client_secret", "webhook_secret"):
                if not isinstance(value, str) or len(value) > 200:
                    raise ValueError(f"{key} is a string of at most 200 characters")
                setattr(self, key, value)
            elif key == "telemetry_rate_hz":
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0.1 <= value <= 10:
                    raise ValueError("telemetry_rate_hz is from 0.1 to 10")
                self.telemetry_rate_hz = float(value)
            else:
                raise ValueError(f"unknown sandbox setting '{key}'")


@dataclass
class SimTender:
    """One tender as the carrier sees it."""

    ref: str
    tender_id: int
    request: dict[str, Any]
    correlation_id: str
    tenant: str = ""
    status: str = "pending"
    offer: dict[str, Any] | None = None
    decided: dict[str, Any] | None = None  # the answer, before it is made visible (async mode)
    updated_at: str = field(default_factory=utc_now_iso)
    gone: bool = False  # withdrawn by the carrier: GET answers 410
    traceparent: str = ""  # the trace the tender arrived in; its later answer continues it

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ref": self.ref,
            "tender_id": self.tender_id,
            "status": self.status,
            "offer": self.offer,
            "updated_at": self.updated_at,
        }
        if self.correlation_id:
            body["correlation_id"] = self.correlation_id
        return body


@dataclass
class SimConfig:
    """How the simulated carrier behaves."""

    client_id: str = "sim-carrier"
    client_secret: str = "sim-secret"  # noqa: S105 - a development default, overridable by flag or env
    policy: dict[str, float] = field(default_factory=lambda: {"accept": 0.7, "reject": 0.2, "counter": 0.1})
    # sync: in the submit response; async: later, by callback and on GET; hold: never by the simulator, the
    # tender stays pending until the carrier's own dispatcher answers it through the console's partner API.
    answer: str = "sync"
    delay_ms: int = 0  # async answers become visible / are delivered after this delay
    vehicles: list[str] = field(default_factory=lambda: ["SIM-001", "SIM-002", "SIM-003"])
    token_ttl_seconds: int = 3600
    counter_markup: Decimal = Decimal("1.15")
    seed: int | None = None
    # Where async answers go: the console's partner API (client credentials) or a signed webhook.
    console_url: str = ""
    console_token_url: str = ""
    console_client_id: str = ""
    console_client_secret: str = ""
    webhook_secret: str = ""
    # How long a "timeout" fault holds a request before dropping it.
    timeout_hold_seconds: float = 30.0
    # TLS: serve HTTPS with this certificate; with client_ca, require a client certificate (mTLS).
    tls_cert: str = ""
    tls_key: str = ""
    client_ca: str = ""
    # Several carriers in one process: requests under /carriers/<slug>/ belong to
    # carrier <slug>, whose OAuth client id is the slug and whose secret is
    # secret_for(slug); tenant_vehicles lists each one's vehicles.
    secret_for: Callable[[str], str] | None = None
    tenant_vehicles: dict[str, list[str]] = field(default_factory=dict)
    # A carrier's sandbox credentials for the console's API, (client id, client secret, webhook secret),
    # for a carrier served under /carriers/<slug>/ that was not given any (the demo derives them).
    sandbox_credentials_for: Callable[[str], tuple[str, str, str]] | None = None


class SimState:
    """The carrier's books: tokens, tenders, idempotency keys, faults and counters."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.tenant_faults: dict[str, Faults] = {config.client_id: Faults()}
        self.lock = threading.RLock()
        self.rng = random.Random(config.seed)
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, monotonic expiry)
        self.tenders: dict[str, SimTender] = {}
        # (client id, Idempotency-Key) -> (request fingerprint, tender ref or None while in flight)
        self.keys: dict[tuple[str, str], tuple[str, str | None]] = {}
        self.cancel_keys: dict[tuple[str, str], str] = {}
        self.requests: list[dict[str, Any]] = []
        self.deliveries: list[dict[str, Any]] = []
        self._vehicle_turn = 0
        # The sandbox's credentials for the console's API, per carrier served; (tenant, key) -> run of each emit.
        self.sandbox: dict[str, SandboxCredentials] = {
            config.client_id: SandboxCredentials(
                client_id=config.console_client_id,
                client_secret=config.console_client_secret,
                webhook_secret=config.webhook_secret,
            )
        }
        self.emits: dict[tuple[str, str], str] = {}
        self.emissions: list[dict[str, Any]] = []  # what the sandbox's emissions sent, and the answers

    # -- tokens ------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """Faults of the default carrier (requests without a /carriers/<slug> prefix)."""
        return self.faults_for(self.config.client_id)

    def faults_for(self, tenant: str) -> Faults:
        with self.lock:
            return self.tenant_faults.setdefault(tenant, Faults())

    def sandbox_for(self, tenant: str) -> SandboxCredentials:
        with self.lock:
            if tenant not in self.sandbox:
                derive = self.config.sandbox_credentials_for
                client_id, secret, webhook = derive(tenant) if derive is not None else ("", "", "")
                self.sandbox[tenant] = SandboxCredentials(client_id, secret, webhook)
            return self.sandbox[tenant]

    def vehicles_for(self, tenant: str) -> list[str]:
        return self.config.tenant_vehicles.get(tenant) or self.config.vehicles

    def client_check(self, client_id: str, client_secret: str) -> bool:
        if client_id == self.config.client_id and hmac.compare_digest(client_secret, self.config.client_secret):
            return True
        derive = self.config.secret_for
        return bool(client_id and derive is not None and hmac.compare_digest(client_secret, derive(client_id)))

    def token_issue(self, client_id: str) -> tuple[str, int]:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = (client_id, time.monotonic() + self.config.token_ttl_seconds)
        return token, self.config.token_ttl_seconds

    def token_client(self, token: str) -> str | None:
        """The client id a live token was issued to, or None."""
        with self.lock:
            entry = self.tokens.get(token)
            if entry is None or entry[1] <= time.monotonic():
                return None
            return entry[0]

    def tokens_revoke(self) -> None:
        """Forget every token (tests use it to see the client refresh after a 401)."""
        with self.lock:
            self.tokens.clear()

    # -- faults --------------------------------------------------------------------

    def fault_take_error(self, tenant: str) -> bool:
        """Consume one call of an error burst; True if this call must answer 503."""
        with self.lock:
            faults = self.faults_for(tenant)
            if faults.error_burst > 0:
                faults.error_burst -= 1
                return True
            return False

    def faults_public(self, tenant: str) -> dict[str, Any]:
        with self.lock:
            return asdict(self.faults_for(tenant))

    # -- tenders ---------------------------------------------------------------------

    @staticmethod
    def fingerprint(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def decide(self, request: dict[str, Any], *, tenant: str) -> dict[str, Any]:
        """Pick an answer by policy and build its offer (caller holds the lock)."""
        names = [n for n in ANSWERS if self.config.policy.get(n, 0) > 0]
        weights = [self.config.policy[n] for n in names]
        kind = self.rng.choices(names, weights=weights, k=1)[0]
        offer: dict[str, Any] = {"kind": kind}
        if kind == "accept":
            vehicles = self.vehicles_for(tenant)
            vehicle = vehicles[self._vehicle_turn % len(vehicles)] if vehicles else None
            self._vehicle_turn += 1
            # Clamped: a continental lane is under 10,000 km, whatever the request claims.
            distance_km = min(max(float(request.get("shipment", {}).get("distance_km") or 400.0), 0.0), 10_000.0)
            eta = datetime.now(UTC) + timedelta(hours=distance_km / 80.0 + 1)
            offer.update(
                {
                    "vehicle_id": vehicle,
                    "route_id": f"SIM-{request['shipment']['origin']['region']}-"
                    f"{request['shipment']['destination']['region']}",
                    "autonomy_mode": "autonomous",
                    "eta": eta.isoformat(timespec="seconds").replace("+00:00", "Z"),
                    "price_usd": request.get("offered_price_usd"),
                }
            )
        elif kind == "reject":
            offer["reason"] = "no capacity on that lane"
        else:
            base = Decimal(str(request.get("offered_price_usd") or "1000.00"))
            offer["price_usd"] = f"{(base * self.config.counter_markup).quantize(Decimal('0.01'))}"
            offer["reason"] = "lane rate above the offer"
        return offer

    def tender_count(self) -> int:
        with self.lock:
            return len(self.tenders)

    def tenders_restore(self, entries: list[dict[str, Any]], *, tenant: str) -> int:
        """Put tenders back in the books as pending, as if they had been received before; returns how many.

        Each entry holds the ``ref`` the console knows, the ``idempotency_key`` it sends and the
        ``request`` (its TenderSubmit body), so a later resend under that key is a replay of the same
        tender, not a second one. A ref already in the books is left as it is.
        """
        restored = 0
        with self.lock:
            for entry in entries:
                ref, key, request = str(entry["ref"]), str(entry["idempotency_key"]), dict(entry["request"])
                if ref in self.tenders:
                    continue
                self.tenders[ref] = SimTender(
                    ref=ref,
                    tender_id=int(request["tender_id"]),
                    request=request,
                    correlation_id=str(request.get("correlation_id") or ""),
                    tenant=tenant,
                )
                self.keys[(tenant, key)] = (self.fingerprint(request), ref)
                restored += 1
        return restored

    def tenders_forget(self) -> None:
        """Lose every tender and idempotency key, as a carrier does when it restarts without its books."""
        with self.lock:
            self.tenders.clear()
            self.keys.clear()
            self.cancel_keys.clear()

    def tender_withdraw(self, ref: str) -> None:
        """The carrier withdraws a tender: from now on GET /tenders/{ref} answers 410 Gone."""
        with self.lock:
            tender = self.tenders[ref]
            tender.gone, tender.decided, tender.updated_at = True, None, utc_now_iso()

    def tender_by_id(self, tender_id: int) -> SimTender | None:
        with self.lock:
            for tender in self.tenders.values():
                if tender.tender_id == tender_id:
                    return tender
            return None
