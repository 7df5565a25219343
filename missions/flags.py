"""Per-carrier feature flags for autonomy capabilities: the catalogue, and their evaluation through OpenFeature.

``CARRIER_FLAGS`` is the one place a flag is defined: its key, its label and
the effect a dispatcher sees when it is on. Flags are evaluated through the
OpenFeature API (``openfeature-sdk``) with the carrier as the evaluation
context's targeting key; ``CarrierFlagProvider`` answers from the console's
own table (``missions.models.CarrierFlag``), written only by
``missions.services.carrier_flag_set`` with an audit event. An unknown flag,
a context without a carrier or a failing lookup evaluates to the default,
off: a capability is never granted by an error. See
docs/decisions/0023-carrier-feature-flags.md.

Flags apply to autonomous carriers; a human-driven carrier's drivers are not
an autonomy capability to switch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import FlagNotFoundError, InvalidContextError, TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from missions.models import Carrier
from missions.models.flags import CarrierFlag

NIGHT_OPERATIONS = "night_operations"
HAZMAT_LANES = "hazmat_lanes"
L5_CORRIDORS = "autonomy_l5_corridors"
TELEMETRY_V2 = "telemetry_schema_v2"

# The OpenFeature domain the console's carrier flags are served under.
DOMAIN = "carrier-flags"


@dataclass(frozen=True)
class CarrierFlagSpec:
    """One flag of the catalogue: what it is called and what changes for the dispatcher when it is on."""

    key: str
    label: str
    effect: str
    # Switching it on lets trucks do something new without a person aboard: the console asks for a confirmation.
    risky: bool


CARRIER_FLAGS: dict[str, CarrierFlagSpec] = {
    spec.key: spec
    for spec in (
        CarrierFlagSpec(
            NIGHT_OPERATIONS,
            "Night operations",
            "Offered loads marked 'needs night driving'. Off: such loads are not offered to this carrier "
            "(tender form, waterfall and failover).",
            risky=True,
        ),
        CarrierFlagSpec(
            HAZMAT_LANES,
            "Hazmat lanes",
            "Offered hazmat loads, when its hazmat permit is on too. Off: hazmat loads are not offered "
            "to this carrier.",
            risky=True,
        ),
        CarrierFlagSpec(
            L5_CORRIDORS,
            "Autonomy level 5 corridors",
            "A level 5 carrier runs level 5 (no safety driver) on lanes along a known interstate corridor, "
            "and ranks ahead of level 4 capacity there. Off: it is tendered as level 4 everywhere.",
            risky=True,
        ),
        CarrierFlagSpec(
            TELEMETRY_V2,
            "Telemetry schema v2",
            "Announced to the carrier in the partner API's capabilities, so its fleet may move to telemetry "
            "schema v2. Tendering does not change.",
            risky=False,
        ),
    )
}

# Within flag_snapshot(): every flag row, read once, by (carrier id, key).
_SNAPSHOT: ContextVar[dict[tuple[int, str], bool] | None] = ContextVar("carrier_flag_snapshot", default=None)


class CarrierFlagProvider(AbstractProvider):
    """OpenFeature provider over the console's ``CarrierFlag`` table (boolean flags only).

    The evaluation context names the carrier: ``targeting_key`` is its slug,
    the attribute ``carrier_id`` its primary key. No row means the flag was
    never set: the caller's default (off) with reason DEFAULT.
    """

    def get_metadata(self) -> Metadata:
        return Metadata(name="tms-console-carrier-flags")

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        if flag_key not in CARRIER_FLAGS:
            raise FlagNotFoundError(f"no carrier flag {flag_key!r}")
        carrier_id = (evaluation_context.attributes if evaluation_context else {}).get("carrier_id")
        if not isinstance(carrier_id, int) or isinstance(carrier_id, bool):
            raise InvalidContextError("carrier flags are evaluated for a carrier: set the carrier_id attribute")
        snapshot = _SNAPSHOT.get()
        if snapshot is not None:
            value = snapshot.get((carrier_id, flag_key))
        else:
            value = (
                CarrierFlag.objects.filter(carrier_id=carrier_id, key=flag_key)
                .values_list("enabled", flat=True)
                .first()
            )
        if value is None:
            return FlagResolutionDetails(value=default_value, reason=Reason.DEFAULT)
        return FlagResolutionDetails(value=bool(value), reason=Reason.TARGETING_MATCH, variant="on" if value else "off")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        raise TypeMismatchError("carrier flags are boolean")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        raise TypeMismatchError("carrier flags are boolean")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        raise TypeMismatchError("carrier flags are boolean")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        raise TypeMismatchError("carrier flags are boolean")


def provider_install() -> None:
    """Serve the carrier flags from the console's table (``MissionsConfig.ready``; idempotent)."""
    if not isinstance(api.get_client(DOMAIN).provider, CarrierFlagProvider):
        api.set_provider(CarrierFlagProvider(), domain=DOMAIN)


def _client() -> OpenFeatureClient:
    provider_install()
    return api.get_client(DOMAIN)


def carrier_context(carrier: Carrier) -> EvaluationContext:
    return EvaluationContext(targeting_key=carrier.slug, attributes={"carrier_id": carrier.pk})


def flag_enabled(carrier: Carrier, key: str) -> bool:
    """Whether ``key`` is on for ``carrier``; off for a human-driven carrier, an unknown key or any error."""
    if not carrier.is_autonomous or carrier.pk is None:
        return False
    return _client().get_boolean_value(key, False, carrier_context(carrier))


def carrier_flag_states(carrier: Carrier) -> dict[str, bool]:
    """Every flag of the catalogue for one carrier, in catalogue order."""
    with flag_snapshot():
        return {key: flag_enabled(carrier, key) for key in CARRIER_FLAGS}


@contextmanager
def flag_snapshot() -> Iterator[None]:
    """Evaluate many flags of many carriers from one read of the table (a ranking, a page).

    Nested scopes keep the outer snapshot. Outside a scope every evaluation is
    its own indexed lookup, so a check right after a change sees it.
    """
    if _SNAPSHOT.get() is not None:
        yield
        return
    rows = CarrierFlag.objects.values_list("carrier_id", "key", "enabled")
    token = _SNAPSHOT.set({(carrier_id, key): enabled for carrier_id, key, enabled in rows})
    try:
        yield
    finally:
        _SNAPSHOT.reset(token)
