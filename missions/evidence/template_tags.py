"""``{% mission_attestations_card mission %}``: the mission page's attestation list, verified on render."""

from __future__ import annotations

from typing import Any

from django import template

from missions.evidence.selectors import mission_attestations
from missions.models import Mission

register = template.Library()


@register.inclusion_tag("missions/_attestations.html")
def mission_attestations_card(mission: Mission) -> dict[str, Any]:
    return {"mission": mission, "attestation_rows": mission_attestations(mission.pk), "show_link": True}
