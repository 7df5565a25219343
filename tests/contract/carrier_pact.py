"""The console's pact with a carrier API: every interaction the console's carrier client relies on.

Consumer ``tms-console``, provider ``carrier-api`` (docs/carrier-api.yaml; the carrier simulator verifies
it). Each interaction is built by one function of ``INTERACTIONS``, so the consumer tests, which exercise
them against Pact's mock server, and ``test_carrier_pact_file_is_what_the_consumer_tests_write``, which
builds all of them, write the same pact.

What the pact pins and what it leaves open:

* The carrier's own values (its tender ``ref``, access token, timestamps, vehicle and route ids) are matched
  by type or pattern, never by value. The ``ref`` and the token are *provider-state values*: the state
  handler on the provider side (tests/contract/carrier_states.py) creates the tender or issues the token and
  hands them back, and the verifier puts them into the request (``${ref}``, ``${accessToken}``).
* The console's own values are matched by pattern (UUID keys, ISO 8601 UTC times, decimal money strings) or
  by type (the shipment), so the real client's requests, with the ids and times of the test's database rows,
  match; the examples are what the verifier sends to the provider, and they are valid TenderSubmit bodies.
* Statuses, answer kinds and error shapes are pinned by value: they are what the console acts on.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any

from pact import Pact, generate, match
from pact.match.matcher import GenericMatcher

CONSUMER = "tms-console"
PROVIDER = "carrier-api"

# The simulator's development client (SimConfig's defaults); the provider side registers nothing else.
CLIENT_ID = "sim-carrier"
CLIENT_SECRET = "sim-secret"

UTC_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
MONEY = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"
TENDER_PATH = r"^/tenders/[^/]+$"
CANCEL_PATH = r"^/tenders/[^/]+/cancel$"
AUTONOMY_MODE = r"^(autonomous|supervised|manual|safe_hold)$"

TOKEN = "example-access-token"
REF = "SIM-00001-0a1b2c"
UNKNOWN_REF = "SIM-99999-ffffff"
IDEMPOTENCY_KEY = "6f1c2d3e-4b5a-4c6d-8e7f-901a2b3c4d5e"
CORRELATION_ID = "0d9e8f7a-6b5c-4d3e-9f1a-2b3c4d5e6f70"
VEHICLE_ID = "SIM-001"

# The body the console sends for a tender (TenderSubmit): the example the verifier replays.
TENDER_ID = 4242
TENDER_BODY: dict[str, Any] = {
    "tender_id": TENDER_ID,
    "shipment": {
        "reference": "SHP-PACT-00001",
        "origin": {"address": "Dallas, TX", "region": "TX", "lat": 32.7767, "lon": -96.797},
        "destination": {"address": "Houston, TX", "region": "TX", "lat": 29.7604, "lon": -95.3698},
        "pickup_window": {"start": "2026-12-07T08:00:00Z", "end": "2026-12-07T10:00:00Z"},
        "delivery_window": {"start": "2026-12-07T13:00:00Z", "end": "2026-12-07T16:00:00Z"},
        "weight_kg": 18000,
        "hazmat": False,
        "max_autonomy_level": 4,
        "preferred_route": "I-45-S",
        "distance_km": 362.5,
    },
    "offered_price_usd": "1400.00",
    "expires_at": "2026-12-07T07:15:00Z",
    "correlation_id": CORRELATION_ID,
    "callback": {
        "offers_url": f"https://tms.example/api/v1/tenders/{TENDER_ID}/offers",
        "webhook_url": "https://tms.example/api/v1/webhooks/pact-carrier",
    },
}


def utc_time(example: str) -> Any:
    return match.regex(example, regex=UTC_TIME)


def tender_body() -> dict[str, Any]:
    """TENDER_BODY with the matching rules of what varies from one tender to the next."""
    body = copy.deepcopy(TENDER_BODY)
    shipment = body["shipment"]
    for window in ("pickup_window", "delivery_window"):
        shipment[window] = {k: utc_time(v) for k, v in shipment[window].items()}
    return {
        "tender_id": match.int(TENDER_ID),
        # The shipment by type: its places, weights and windows are the test's data, not the contract's.
        "shipment": match.like(shipment),
        "offered_price_usd": match.regex(body["offered_price_usd"], regex=MONEY),
        "expires_at": utc_time(body["expires_at"]),
        "correlation_id": match.uuid(CORRELATION_ID),
        "callback": {
            "offers_url": match.regex(
                body["callback"]["offers_url"], regex=r"^https?://[^/\s]+(/\S*)?/api/v1/tenders/\d+/offers$"
            ),
            "webhook_url": match.regex(
                body["callback"]["webhook_url"], regex=r"^https?://[^/\s]+(/\S*)?/api/v1/webhooks/[a-z0-9-]+$"
            ),
        },
    }


def _from_state(example: str, expression: str, *, regex: str | None = None) -> Any:
    """A value the verifier takes from the provider state (``expression``); ``example`` for the mock server."""
    if regex is None:
        return GenericMatcher("type", value=example, generator=generate.provider_state(expression))
    return GenericMatcher("regex", value=example, generator=generate.provider_state(expression), regex=regex)


def _bearer(interaction: Any) -> Any:
    return interaction.with_header(
        "Authorization", _from_state(f"Bearer {TOKEN}", "Bearer ${accessToken}", regex=r"^Bearer \S+$")
    )


def _basic(secret: str) -> str:
    return "Basic " + base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()


def _answered_state(status: str, offer: Any) -> dict[str, Any]:
    """A TenderState body with the carrier's values matched by type or pattern."""
    return {
        "ref": match.str(REF),
        "tender_id": match.int(TENDER_ID),
        "status": status,
        "offer": offer,
        "correlation_id": match.uuid(CORRELATION_ID),
        "updated_at": utc_time("2026-12-07T07:00:05Z"),
    }


ACCEPT_OFFER = {
    "kind": "accept",
    "vehicle_id": match.str(VEHICLE_ID),
    "route_id": match.str("SIM-TX-TX"),
    "autonomy_mode": match.regex("autonomous", regex=AUTONOMY_MODE),
    "eta": utc_time("2026-12-07T12:30:00Z"),
    "price_usd": match.regex("1400.00", regex=MONEY),
}


def _problem(interaction: Any, status: int, title: str) -> Any:
    """An RFC 9457 error answer: the console needs the media type, the status and a title."""
    return interaction.will_respond_with(status).with_body(
        {"type": match.str("about:blank"), "title": title, "status": status, "detail": match.str("Why it failed.")},
        content_type="application/problem+json",
    )


# --- The interactions ----------------------------------------------------------------------------


def token_issue(pact: Pact) -> None:
    (
        pact.upon_receiving("a client-credentials token request")
        .given("the carrier knows the console's client credentials", client_id=CLIENT_ID)
        .with_request("POST", "/oauth/token")
        .with_header("Authorization", match.regex(_basic(CLIENT_SECRET), regex=r"^Basic [A-Za-z0-9+/=]+$"))
        .with_body("grant_type=client_credentials", content_type="application/x-www-form-urlencoded")
        .will_respond_with(200)
        .with_body(
            {
                "access_token": match.str(TOKEN),
                "token_type": match.regex("Bearer", regex=r"^[Bb]earer$"),
                "expires_in": match.int(3600),
            },
            content_type="application/json",
        )
    )


def token_refused(pact: Pact) -> None:
    (
        pact.upon_receiving("a token request with a wrong client secret")
        .given("the carrier knows the console's client credentials", client_id=CLIENT_ID)
        .with_request("POST", "/oauth/token")
        .with_header("Authorization", match.regex(_basic("wrong-secret"), regex=r"^Basic [A-Za-z0-9+/=]+$"))
        .with_body("grant_type=client_credentials", content_type="application/x-www-form-urlencoded")
        .will_respond_with(401)
        .with_body({"error": "invalid_client"}, content_type="application/json")
    )


def tender_submit(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a tender submitted with an Idempotency-Key, answered in the response")
        .given("the console holds an access token")
        .given("the carrier accepts every tender")
        .with_request("POST", "/tenders")
        .with_header("Idempotency-Key", match.uuid(IDEMPOTENCY_KEY))
        .with_header("X-Correlation-ID", match.uuid(CORRELATION_ID))
    )
    (
        _bearer(interaction)
        .with_body(tender_body(), content_type="application/json")
        .will_respond_with(201)
        .with_body(_answered_state("accepted", ACCEPT_OFFER), content_type="application/json")
    )


def tender_resend(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("the same tender submitted again under its Idempotency-Key")
        .given("the console holds an access token")
        .given(
            "the carrier holds a tender it has not answered yet",
            {"idempotency_key": IDEMPOTENCY_KEY, "request": TENDER_BODY},
        )
        .with_request("POST", "/tenders")
        # The examples are the key and body the state put in the carrier's books: it replays its answer.
        .with_header("Idempotency-Key", match.uuid(IDEMPOTENCY_KEY))
        .with_header("X-Correlation-ID", match.uuid(CORRELATION_ID))
    )
    (
        _bearer(interaction)
        .with_body(tender_body(), content_type="application/json")
        .will_respond_with(200)
        .with_body(
            {
                "ref": match.str(REF),
                "tender_id": match.int(TENDER_ID),
                "status": "pending",
                "offer": None,
                "updated_at": utc_time("2026-12-07T07:00:05Z"),
            },
            content_type="application/json",
        )
    )


def status_accepted(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a status poll of a tender the carrier accepted")
        .given("the console holds an access token")
        .given("the carrier answered a tender", answer="accept")
        .with_request("GET", _from_state(f"/tenders/{REF}", "/tenders/${ref}", regex=TENDER_PATH))
    )
    (
        _bearer(interaction)
        .will_respond_with(200)
        .with_body(_answered_state("accepted", ACCEPT_OFFER), content_type="application/json")
    )


def status_countered(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a status poll of a tender the carrier countered")
        .given("the console holds an access token")
        .given("the carrier answered a tender", answer="counter")
        .with_request("GET", _from_state(f"/tenders/{REF}", "/tenders/${ref}", regex=TENDER_PATH))
    )
    counter = {
        "kind": "counter",
        "price_usd": match.regex("1610.00", regex=MONEY),
        "reason": match.str("lane rate above the offer"),
    }
    (
        _bearer(interaction)
        .will_respond_with(200)
        .with_body(_answered_state("countered", counter), content_type="application/json")
    )


def status_pending(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a status poll of a tender not answered yet")
        .given("the console holds an access token")
        .given("the carrier holds a tender it has not answered yet", {"request": TENDER_BODY})
        .with_request("GET", _from_state(f"/tenders/{REF}", "/tenders/${ref}", regex=TENDER_PATH))
    )
    (
        _bearer(interaction)
        .will_respond_with(200)
        .with_body(
            {
                "ref": match.str(REF),
                "tender_id": match.int(TENDER_ID),
                "status": "pending",
                "offer": None,
                "updated_at": utc_time("2026-12-07T07:00:05Z"),
            },
            content_type="application/json",
        )
    )


def status_unknown(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a status poll of a tender the carrier does not know")
        .given("the console holds an access token")
        .with_request("GET", f"/tenders/{UNKNOWN_REF}")
    )
    _problem(_bearer(interaction), 404, "Not Found")


def status_withdrawn(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a status poll of a tender the carrier withdrew")
        .given("the console holds an access token")
        .given("the carrier withdrew a tender", {"request": TENDER_BODY})
        .with_request("GET", _from_state(f"/tenders/{REF}", "/tenders/${ref}", regex=TENDER_PATH))
    )
    _problem(_bearer(interaction), 410, "Gone")


def cancel_pending(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a cancel of a tender not answered yet")
        .given("the console holds an access token")
        .given("the carrier holds a tender it has not answered yet", {"request": TENDER_BODY})
        .with_request("POST", _from_state(f"/tenders/{REF}/cancel", "/tenders/${ref}/cancel", regex=CANCEL_PATH))
        .with_header("Idempotency-Key", match.uuid(IDEMPOTENCY_KEY))
    )
    (
        _bearer(interaction)
        .with_body({"reason": match.str("shipment cancelled by the shipper")}, content_type="application/json")
        .will_respond_with(200)
        .with_body(
            {
                "ref": match.str(REF),
                "tender_id": match.int(TENDER_ID),
                "status": "cancelled",
                "updated_at": utc_time("2026-12-07T07:00:05Z"),
            },
            content_type="application/json",
        )
    )


def cancel_accepted(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a cancel of a tender the carrier already accepted")
        .given("the console holds an access token")
        .given("the carrier answered a tender", answer="accept")
        .with_request("POST", _from_state(f"/tenders/{REF}/cancel", "/tenders/${ref}/cancel", regex=CANCEL_PATH))
        .with_header("Idempotency-Key", match.uuid(IDEMPOTENCY_KEY))
    )
    _problem(
        _bearer(interaction).with_body(
            {"reason": match.str("shipment cancelled by the shipper")}, content_type="application/json"
        ),
        409,
        "Conflict",
    )


def vehicle_ping(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a vehicle ping through the carrier's alternate channel")
        .given("the console holds an access token")
        .given("the carrier runs a vehicle", vehicle_id=VEHICLE_ID)
        .with_request("GET", f"/vehicles/{VEHICLE_ID}/ping")
    )
    (
        _bearer(interaction)
        .will_respond_with(200)
        .with_body(
            {
                "vehicle_id": VEHICLE_ID,
                "channel": match.regex("satellite", regex=r"^(primary|cellular|satellite)$"),
                "autonomy_mode": match.regex("autonomous", regex=AUTONOMY_MODE),
                "safe_hold": match.bool(False),
                "position": {
                    "lat": match.number(32.7767),
                    "lon": match.number(-96.797),
                    "recorded_at": utc_time("2026-12-07T07:00:00Z"),
                },
            },
            content_type="application/json",
        )
    )


def health(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a health check").given("the console holds an access token").with_request("GET", "/health")
    )
    (
        _bearer(interaction)
        .will_respond_with(200)
        .with_body({"status": match.regex("ok", regex=r"^(ok|degraded)$")}, content_type="application/json")
    )


def health_overloaded(pact: Pact) -> None:
    interaction = (
        pact.upon_receiving("a health check while the carrier is overloaded")
        .given("the console holds an access token")
        .given("the carrier answers the next call with 503")
        .with_request("GET", "/health")
    )
    _problem(_bearer(interaction), 503, "Service Unavailable").with_header(
        "Retry-After", match.regex("1", regex=r"^\d+$")
    )


INTERACTIONS: tuple[Callable[[Pact], None], ...] = (
    token_issue,
    token_refused,
    tender_submit,
    tender_resend,
    status_accepted,
    status_countered,
    status_pending,
    status_unknown,
    status_withdrawn,
    cancel_pending,
    cancel_accepted,
    vehicle_ping,
    health,
    health_overloaded,
)


def carrier_pact(*builders: Callable[[Pact], None]) -> Pact:
    """A pact of the console with a carrier holding the interactions ``builders`` build (V4)."""
    pact = Pact(CONSUMER, PROVIDER).with_specification("V4")
    for build in builders:
        build(pact)
    return pact
