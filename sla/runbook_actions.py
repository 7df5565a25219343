"""Step actions the SLA engine provides to runbooks (registered from ``SlaConfig.ready``)."""

from __future__ import annotations

from runbooks.actions import Outcome, action_register
from runbooks.models import Incident, RunbookRun, RunbookStep
from sla.models import Breach


def gather_evidence(incident: Incident, run: RunbookRun, step: RunbookStep) -> Outcome:
    """The SLA-dispute runbook's step: the carrier's latest breaches, for the review."""
    breaches = Breach.objects.filter(carrier=incident.carrier).order_by("-id")[:5] if incident.carrier else []
    return Outcome.done(breaches=[b.pk for b in breaches])


def register() -> None:
    action_register("gather_evidence", gather_evidence)
