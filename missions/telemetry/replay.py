"""Replay of the durable event log from a cursor (the AuditEvent id).

The log is appended in the same transaction as each change, so a consumer that
remembers the last id it saw and asks for ``after=<id>`` misses nothing, be it a
downstream system polling ``GET /api/v1/events`` or a live page reconnecting.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from missions.models import AuditEvent

# Mission state, autonomy mode, safety and exception records, and telemetry gaps closing and backfilled.
REPLAY_ACTIONS = (
    "mission.created",
    "mission.status_changed",
    "mission.mode_changed",
    "mission.exception",
    "mission.exception_resolved",
    "mission.telemetry_resumed",
    "mission.telemetry_backfilled",
)
REPLAY_LIMIT_MAX = 1000


def events_after(*, carrier_id: int | None, after: int, limit: int) -> QuerySet[AuditEvent]:
    """Mission, mode, safety and exception events with an id above ``after``, oldest first.

    ``carrier_id`` scopes the log to one carrier (a partner sees only its own
    missions); ``None`` is the unscoped view for console users.
    """
    limit = max(1, min(int(limit), REPLAY_LIMIT_MAX))
    qs = AuditEvent.objects.filter(id__gt=max(0, int(after))).filter(
        Q(action__in=REPLAY_ACTIONS) | Q(action__startswith="mission.safety")
    )
    if carrier_id is not None:
        qs = qs.filter(carrier_id=carrier_id)
    return qs.order_by("id")[:limit]
