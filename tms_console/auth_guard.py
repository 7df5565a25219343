"""The guard on guessing: budgets of failed bearer tokens, client secrets and console passwords.

Each kind of credential has a small budget of failures per (identity,
address), the identity being the user name or client id tried, and a larger
one per address (``AUTH_GUARD_*`` settings, README "Security"). Budgets are
limits of the shared store (``tms_console.ratelimit``), so they hold across
processes. Keying the small budget by address as well means an attacker who
spends a user's budget from one address does not lock the user out from
another; the per-address budget stops one address from trying many
identities.

Client secrets and passwords *reserve* a guess before the credential is
checked (``attempt_begin``) and give it back when the credential was right,
so concurrent guesses cannot exceed the budget and a spent budget refuses
even the right answer until the window slides on. Bearer tokens are 256-bit
random values that cannot be guessed: a failed one is counted after the fact
(``bearer_failure_record``) to stop floods, and a valid token is served even
from an address whose budget is spent (another client may share it).

Every failure is counted in ``tms_auth_failures_total``, logged on the
``tms_console.security`` logger and handed to the recorders registered from
above (the domain core writes an audit event when the credential names a
known user or client); every refusal is counted in
``tms_auth_guard_refusals_total``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from tms_console.client_address import address_partition
from tms_console.metrics import AUTH_FAILURES, AUTH_GUARD_REFUSALS
from tms_console.ratelimit import Decision, Policy, Rate, limiter

security_log = logging.getLogger("tms_console.security")
log = logging.getLogger(__name__)


class GuardKind(enum.StrEnum):
    # Kinds of credential, not credentials.
    BEARER_TOKEN = "bearer_token"  # noqa: S105
    CLIENT_SECRET = "client_secret"  # noqa: S105
    PASSWORD = "password"  # noqa: S105


# (policy name, setting) of the budget per (identity, address) and of the budget per address.
_BUDGETS: dict[GuardKind, tuple[tuple[str, str] | None, tuple[str, str]]] = {
    GuardKind.BEARER_TOKEN: (None, ("bearer-failures", "AUTH_GUARD_BEARER_PER_ADDRESS")),
    GuardKind.CLIENT_SECRET: (
        ("secret-failures", "AUTH_GUARD_SECRET_PER_CLIENT"),
        ("secret-failures-address", "AUTH_GUARD_PER_ADDRESS"),
    ),
    GuardKind.PASSWORD: (
        ("password-failures", "AUTH_GUARD_PASSWORD_PER_USER"),
        ("password-failures-address", "AUTH_GUARD_PER_ADDRESS"),
    ),
}


def _policy(entry: tuple[str, str] | None) -> Policy | None:
    if entry is None:
        return None
    rate = Rate.parse(str(getattr(settings, entry[1], "") or ""))
    return Policy(name=entry[0], rate=rate) if rate is not None else None


def guard_budgets(kind: GuardKind) -> tuple[Policy | None, Policy | None]:
    """(per identity and address, per address) budgets of ``kind``; None where turned off."""
    per_identity, per_address = _BUDGETS[kind]
    return _policy(per_identity), _policy(per_address)


def _budgets(kind: GuardKind, identity: str, address: str) -> list[tuple[Policy, str]]:
    per_identity, per_address = guard_budgets(kind)
    where = address_partition(address)
    budgets: list[tuple[Policy, str]] = []
    if per_identity is not None:
        # casefold: "Dispatcher" and "dispatcher" share a budget, so case games buy no extra guesses.
        budgets.append((per_identity, f"{identity.casefold()}|{where}"))
    if per_address is not None:
        budgets.append((per_address, where))
    return budgets


@dataclass(frozen=True)
class SecurityEvent:
    """One failed credential: what was tried, from where, and whom it names when that is known."""

    kind: GuardKind
    address: str
    identity: str  # the user name or client id tried ("" for bearer tokens)
    reason: str
    subject_type: str | None = None  # "user", "partner_client": set when the identity exists
    subject_id: int | None = None
    carrier_id: int | None = None


_recorders: list[Callable[[SecurityEvent], None]] = []


def security_recorder_register(recorder: Callable[[SecurityEvent], None]) -> None:
    """Called from above (the domain core's AppConfig.ready) to keep failures in the audit log."""
    if recorder not in _recorders:
        _recorders.append(recorder)


def security_recorder_unregister(recorder: Callable[[SecurityEvent], None]) -> None:
    if recorder in _recorders:
        _recorders.remove(recorder)


def security_failure_record(event: SecurityEvent) -> None:
    """Count, log and audit one failed credential."""
    AUTH_FAILURES.labels(event.kind.value).inc()
    security_log.warning(
        "authentication failed",
        extra={
            "security_event": f"{event.kind.value}_failed",
            "client_address": event.address,
            "identity": event.identity[:150],
            "reason": event.reason,
        },
    )
    for recorder in _recorders:
        try:
            recorder(event)
        except Exception:  # the audit row must not turn a refused credential into a 500
            log.exception("security event not recorded", extra={"security_event": f"{event.kind.value}_failed"})


class GuessRefused(Exception):
    """A failure budget is spent: answer 429 with ``Retry-After`` (a form error in the console)."""

    def __init__(self, kind: GuardKind, decision: Decision) -> None:
        super().__init__(f"Too many failed {kind.value.replace('_', ' ')}s; retry in {decision.retry_after} s.")
        self.kind = kind
        self.decision = decision

    @property
    def retry_after(self) -> int:
        return self.decision.retry_after


def _refused(kind: GuardKind, address: str, identity: str, decision: Decision) -> GuessRefused:
    AUTH_GUARD_REFUSALS.labels(kind.value).inc()
    security_log.info(
        "authentication refused: failure budget spent",
        extra={
            "security_event": f"{kind.value}_refused",
            "client_address": address,
            "identity": identity[:150],
            "policy": decision.policy.name,
            "retry_after": decision.retry_after,
        },
    )
    return GuessRefused(kind, decision)


@dataclass
class Attempt:
    """A guess reserved in every budget of its kind, to be settled once the credential is checked."""

    kind: GuardKind
    identity: str
    address: str
    decisions: list[Decision] = field(default_factory=list)

    def succeeded(self) -> None:
        """The credential was right (or was never checked): the guess costs nothing."""
        for decision in self.decisions:
            limiter().refund(decision)
        self.decisions = []

    def failed(
        self,
        *,
        reason: str,
        subject_type: str | None = None,
        subject_id: int | None = None,
        carrier_id: int | None = None,
    ) -> None:
        """The credential was wrong: the reserved guess stays spent, and the failure is recorded."""
        self.decisions = []
        security_failure_record(
            SecurityEvent(
                kind=self.kind,
                address=self.address,
                identity=self.identity,
                reason=reason,
                subject_type=subject_type,
                subject_id=subject_id,
                carrier_id=carrier_id,
            )
        )


def attempt_begin(*, kind: GuardKind, identity: str, address: str) -> Attempt:
    """Reserve one guess in each budget, or raise ``GuessRefused`` (nothing reserved) when one is spent."""
    attempt = Attempt(kind=kind, identity=identity, address=address)
    for policy, partition in _budgets(kind, identity, address):
        decision = limiter().hit(policy, partition)
        if not decision.allowed:
            attempt.succeeded()  # give back what the other budgets reserved
            raise _refused(kind, address, identity, decision)
        attempt.decisions.append(decision)
    return attempt


def bearer_failure_record(
    *,
    address: str,
    reason: str,
    subject_type: str | None = None,
    subject_id: int | None = None,
    carrier_id: int | None = None,
) -> Decision | None:
    """Count a failed bearer token against its address; a decision that is not allowed means answer 429."""
    _, per_address = guard_budgets(GuardKind.BEARER_TOKEN)
    decision = limiter().hit(per_address, address_partition(address)) if per_address is not None else None
    if decision is not None and not decision.allowed:
        _refused(GuardKind.BEARER_TOKEN, address, "", decision)
        return decision
    security_failure_record(
        SecurityEvent(
            kind=GuardKind.BEARER_TOKEN,
            address=address,
            identity="",
            reason=reason,
            subject_type=subject_type,
            subject_id=subject_id,
            carrier_id=carrier_id,
        )
    )
    return decision
