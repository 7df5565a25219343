"""Content negotiation for the API: asking for problem documents never turns an error into a 406.

Kept apart from ``tms_console.problem``: DRF resolves the negotiation class
while ``rest_framework.views`` is being imported, which ``problem`` itself imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request

PROBLEM_CONTENT_TYPE = "application/problem+json"


def accepts_problem_json(accept: str) -> bool:
    """Whether an ``Accept`` field value lists ``application/problem+json`` with a non-zero weight."""
    for item in accept.split(","):
        media_type, *params = (part.strip() for part in item.split(";"))
        if media_type.lower() != PROBLEM_CONTENT_TYPE:
            continue
        weight = next((p.partition("=")[2] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(weight) > 0:
                return True
        except ValueError:
            return True  # a malformed weight is read as the default, 1
    return False


class ProblemAwareContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, except that listing ``application/problem+json`` is never answered 406.

    Errors are always problem documents, so a client that accepts them gets
    every error with its real status (404, 401, 409...). An answer that
    succeeds is then application/json: RFC 9110 §12.5.1 lets a server
    disregard an Accept it cannot meet rather than answer 406, and a 406
    decided after a mutation ran would report a done change as refused.
    Any other unmet Accept (``text/html`` alone) still gets the 406 problem.
    """

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderers = list(renderers)
        try:
            return cast(tuple[BaseRenderer, str], super().select_renderer(request, renderers, format_suffix))
        except NotAcceptable:
            if format_suffix or not accepts_problem_json(request.META.get("HTTP_ACCEPT", "")):
                raise
        renderer = renderers[0]
        return renderer, renderer.media_type
