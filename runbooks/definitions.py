"""The five runbooks the operation starts with (version 1 of each).

Admins edit them in the admin as new versions; ``runbooks_seed`` only
creates a runbook whose slug does not exist yet, so edits are never undone.
A step's ``params.when`` names a run-context condition under which it runs.
"""

from __future__ import annotations

from typing import Any

REVIEW = {
    "title": "Write the post-incident review",
    "kind": "manual",
    "instructions": "Use the review template on the incident page: timeline, telemetry snapshot, SLO impact, "
    "credits, what to change. Close the incident with the review.",
}

RUNBOOKS: list[dict[str, Any]] = [
    {
        "slug": "lost-comms",
        "name": "Lost communications",
        "incident_kind": "lost_comms",
        "description": "A vehicle stopped reporting telemetry for longer than the contract's gap threshold.",
        "steps": [
            {"title": "Record the last known state", "kind": "automated", "action": "record_last_known"},
            {"title": "Try the alternate channel (vehicle ping)", "kind": "automated", "action": "ping_vehicle"},
            {
                "title": "Contain: suspend the mission if in safe hold, pause the fleet",
                "kind": "automated",
                "action": "contain_lost_comms",
            },
            {"title": "Page on-call", "kind": "automated", "action": "page_oncall"},
            {
                "title": "Wait for comms to recover (contract recovery timeout)",
                "kind": "automated",
                "action": "await_recovery",
            },
            {
                "title": "Fail over the remaining leg to a fallback carrier",
                "kind": "automated",
                "action": "failover",
                "params": {"when": "not_recovered"},
            },
            {
                "title": "Arrange a local human pickup (no fallback carrier fits)",
                "kind": "manual",
                "params": {"when": "no_fallback"},
                "instructions": "Call the nearest approved human-driven carrier; record who picks up and when.",
            },
            REVIEW,
        ],
    },
    {
        "slug": "degraded-autonomy",
        "name": "Vehicle degraded to supervised mode",
        "incident_kind": "degraded_autonomy",
        "description": "A vehicle dropped from autonomous to supervised mode or reported degraded sensors.",
        "steps": [
            {"title": "Record the last known state", "kind": "automated", "action": "record_last_known"},
            {"title": "Pause autonomous tendering to the fleet", "kind": "automated", "action": "pause_fleet"},
            {"title": "Page on-call", "kind": "automated", "action": "page_oncall"},
            {
                "title": "Confirm with the carrier's remote operations that the vehicle is supervised",
                "kind": "manual",
                "instructions": "Call the carrier's remote operations centre; note the operator's name.",
            },
            {
                "title": "Confirm the fleet may resume autonomous tendering",
                "kind": "manual",
                "instructions": "Only after the carrier's root cause is known. Resume the fleet from the carrier page.",
            },
            REVIEW,
        ],
    },
    {
        "slug": "emergency-stop",
        "name": "Collision avoidance or emergency stop",
        "incident_kind": "emergency_stop",
        "description": "The vehicle performed collision avoidance or an emergency stop.",
        "steps": [
            {"title": "Freeze the telemetry snapshot", "kind": "automated", "action": "freeze_snapshot"},
            {"title": "Suspend the mission", "kind": "automated", "action": "suspend_mission"},
            {"title": "Page on-call (critical)", "kind": "automated", "action": "page_oncall"},
            {
                "title": "Confirm the vehicle and scene are safe with the carrier",
                "kind": "manual",
                "instructions": "Injuries? Damage? Law enforcement on scene? Record the answers as a note.",
            },
            {
                "title": "Decide: resume the mission or fail over",
                "kind": "manual",
                "instructions": "Resume only with the carrier's written clearance.",
            },
            REVIEW,
        ],
    },
    {
        "slug": "ota-failure",
        "name": "OTA deployment failure on the vehicle edge",
        "incident_kind": "ota_failure",
        "description": "An over-the-air software deployment failed on a vehicle.",
        "steps": [
            {"title": "Record the last known state", "kind": "automated", "action": "record_last_known"},
            {"title": "Pause autonomous tendering to the fleet", "kind": "automated", "action": "pause_fleet"},
            {"title": "Page on-call", "kind": "automated", "action": "page_oncall"},
            {"title": "Have the carrier roll back the deployment; record the version", "kind": "manual"},
            {"title": "Verify vehicle health telemetry after the rollback", "kind": "manual"},
            REVIEW,
        ],
    },
    {
        "slug": "sla-breach",
        "name": "SLA breach verification and arbitration",
        "incident_kind": "sla_breach",
        "description": "An SLO burned its error budget fast enough to page, or a breach was recorded.",
        "steps": [
            {"title": "Page on-call", "kind": "automated", "action": "page_oncall"},
            {"title": "Gather the evidence (SLI inputs, snapshots)", "kind": "automated", "action": "gather_evidence"},
            {
                "title": "Verify the breach evidence",
                "kind": "manual",
                "instructions": "Check the SLI inputs and exclusions on the SLA page.",
            },
            {
                "title": "Confirm or dispute the breach with the carrier",
                "kind": "manual",
                "instructions": "Confirm or dispute on the SLA page; attach the evidence bundle to a dispute.",
            },
            REVIEW,
        ],
    },
]
