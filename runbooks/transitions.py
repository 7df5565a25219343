"""Allowed incident status moves."""

from runbooks.choices import IncidentStatus as S

INCIDENT_TRANSITIONS: dict[str, frozenset[str]] = {
    S.TRIGGERED: frozenset({S.ACKNOWLEDGED, S.MITIGATED, S.RESOLVED}),
    S.ACKNOWLEDGED: frozenset({S.MITIGATED, S.RESOLVED}),
    S.MITIGATED: frozenset({S.RESOLVED}),
    # A resolved incident is reopened if the problem comes back, or closed with a review.
    S.RESOLVED: frozenset({S.CLOSED, S.TRIGGERED}),
    S.CLOSED: frozenset(),
}
INCIDENT_OPEN = frozenset({S.TRIGGERED, S.ACKNOWLEDGED, S.MITIGATED})
