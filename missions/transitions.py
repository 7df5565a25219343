"""Allowed status moves for tenders and missions (the state-machine tables)."""

from missions.choices import MissionStatus as M
from missions.choices import TenderStatus as T

TENDER_TRANSITIONS: dict[str, frozenset[str]] = {
    T.PENDING: frozenset({T.SENT, T.CANCELLED, T.FAILED, T.EXPIRED}),
    T.SENT: frozenset({T.ACCEPTED, T.REJECTED, T.COUNTERED, T.EXPIRED, T.CANCELLED, T.FAILED}),
    # From COUNTERED, ACCEPTED / REJECTED are the dispatcher accepting or declining the counter.
    T.COUNTERED: frozenset({T.ACCEPTED, T.REJECTED, T.EXPIRED, T.CANCELLED}),
    T.ACCEPTED: frozenset(),
    T.REJECTED: frozenset(),
    T.EXPIRED: frozenset(),
    T.CANCELLED: frozenset(),
    T.FAILED: frozenset(),
}
TENDER_OPEN = frozenset({T.PENDING, T.SENT, T.COUNTERED})

MISSION_TRANSITIONS: dict[str, frozenset[str]] = {
    M.ASSIGNED: frozenset({M.EN_ROUTE, M.SUSPENDED, M.CANCELLED, M.FAILED, M.HANDED_OVER}),
    M.EN_ROUTE: frozenset({M.ARRIVING, M.SUSPENDED, M.FAILED, M.CANCELLED, M.HANDED_OVER}),
    M.ARRIVING: frozenset({M.UNLOADING, M.COMPLETED, M.SUSPENDED, M.FAILED, M.HANDED_OVER}),
    M.UNLOADING: frozenset({M.COMPLETED, M.FAILED}),
    M.SUSPENDED: frozenset({M.EN_ROUTE, M.ARRIVING, M.FAILED, M.CANCELLED, M.HANDED_OVER}),
    M.COMPLETED: frozenset(),
    M.FAILED: frozenset(),
    M.CANCELLED: frozenset(),
    M.HANDED_OVER: frozenset(),
}
MISSION_ACTIVE = frozenset({M.ASSIGNED, M.EN_ROUTE, M.ARRIVING, M.UNLOADING, M.SUSPENDED})
MISSION_TERMINAL = frozenset({M.COMPLETED, M.FAILED, M.CANCELLED, M.HANDED_OVER})
