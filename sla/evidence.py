"""The signed statement about an SLA breach verdict (registered with the evidence log)."""

from __future__ import annotations

from typing import Any

from missions.evidence import dsse
from missions.evidence.selectors import event_fields, plain, statement_builder_register
from missions.models import AuditEvent
from missions.models.evidence import AttestationKind
from sla.models import Breach


def breach_verdict_statement(subject_id: int, event: AuditEvent | None) -> tuple[dict[str, Any], int | None] | None:
    """Who decided a breach, when, and on which measured figures."""
    breach = Breach.objects.select_related("carrier", "decided_by").get(pk=subject_id)
    record = plain(
        {
            "breach": breach.pk,
            "carrier": breach.carrier.slug,
            "contract": breach.contract_id,
            "sli": breach.sli,
            "periodStart": breach.period_start,
            "periodEnd": breach.period_end,
            "measured": breach.measured,
            "target": breach.target,
            "unit": breach.unit,
            "attainmentPct": breach.attainment_pct,
            "evidence": breach.evidence,
            "status": breach.status,
            "decidedBy": breach.decided_by.get_username() if breach.decided_by else None,
            "decidedAt": breach.decided_at,
            "reason": breach.reason,
            **event_fields(event),
        }
    )
    return dsse.sla_breach_verdict_statement(breach_ref=str(breach.pk), verdict=breach.status, record=record), None


def register() -> None:
    statement_builder_register(AttestationKind.SLA_BREACH_VERDICT, breach_verdict_statement)
