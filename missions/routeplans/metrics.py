"""Route plan submissions on /metrics, by outcome: ``verified`` or the refusal's problem code."""

from __future__ import annotations

from prometheus_client import Counter

ROUTE_PLAN_SUBMISSIONS = Counter(
    "tms_route_plan_submissions",
    "Signed route plans submitted, by outcome (verified, or the reason of the refusal)",
    ["outcome"],
)


def submission_count(outcome: str) -> None:
    ROUTE_PLAN_SUBMISSIONS.labels(outcome=outcome).inc()
