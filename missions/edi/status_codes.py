"""How 214 AT7 shipment status codes move a mission (the table docs/edi.md reproduces).

Code meanings: ASC X12 element 1650 (Shipment Status Indicator Code) and 1651
(Shipment Status or Appointment Reason Code), as listed in public code-list
references (e.g. USTRANSCOM's motor-carrier shipment status table,
https://www.ustranscom.mil/cmd/associated/dteb/files/refdata/V_MC_SHPMNT_STAT.htm).
"""

from __future__ import annotations

from dataclasses import dataclass

from missions.choices import MissionStatus


@dataclass(frozen=True)
class StatusMapping:
    code: str
    meaning: str
    mission_status: str | None = None  # the status the mission moves to (through the steps before it)
    exception: str | None = None  # an ExceptionKind reported on the mission


AT7_STATUS: dict[str, StatusMapping] = {
    m.code: m
    for m in (
        StatusMapping("X3", "Arrived at pick-up location"),
        StatusMapping("CP", "Completed loading at pick-up location"),
        StatusMapping("AF", "Carrier departed pick-up location with shipment", MissionStatus.EN_ROUTE),
        StatusMapping("X6", "En route to delivery location", MissionStatus.EN_ROUTE),
        StatusMapping("P1", "Departed terminal location", MissionStatus.EN_ROUTE),
        StatusMapping("X2", "Estimated date and/or time of arrival at consignee's location"),
        StatusMapping("AG", "Estimated delivery"),
        StatusMapping("X1", "Arrived at delivery location", MissionStatus.ARRIVING),
        StatusMapping("X5", "Arrived at delivery location loading dock", MissionStatus.ARRIVING),
        StatusMapping("D1", "Completed unloading at delivery location", MissionStatus.COMPLETED),
        StatusMapping("CD", "Carrier departed delivery location", MissionStatus.COMPLETED),
        StatusMapping("SD", "Shipment delayed", exception="delayed"),
        StatusMapping("A9", "Shipment damaged", exception="delayed"),
    )
}

# AT702 reasons worth a readable line on the timeline (any other code is shown as sent).
AT7_REASON: dict[str, str] = {
    "NS": "Normal status",
    "AG": "Consignee related",
    "AH": "Driver related",
    "AI": "Mechanical breakdown",
    "AJ": "Other carrier related",
    "AM": "Shipper related",
    "AO": "Weather or natural disaster related",
    "BE": "Road conditions",
    "BH": "Insufficient time to complete delivery",
    "BK": "Prearranged appointment",
}

# The order a mission moves in; a status report never moves it back.
PROGRESSION = (MissionStatus.ASSIGNED, MissionStatus.EN_ROUTE, MissionStatus.ARRIVING, MissionStatus.COMPLETED)


def steps_to(current: str, target: str) -> list[str]:
    """The statuses to pass through from ``current`` to ``target`` (empty: already there or beyond)."""
    if target not in PROGRESSION:
        return []
    if current == MissionStatus.SUSPENDED:
        start = 0  # a suspended mission resumes en route or arriving
    elif current == MissionStatus.UNLOADING:
        start = PROGRESSION.index(MissionStatus.ARRIVING)
    elif current in PROGRESSION:
        start = PROGRESSION.index(MissionStatus(current))
    else:
        return []
    end = PROGRESSION.index(MissionStatus(target))
    return [str(s) for s in PROGRESSION[start + 1 : end + 1]]


def reason_text(code: str) -> str:
    return AT7_REASON.get(code, code)
