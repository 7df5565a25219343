"""Build a realistic evidence bundle for the tests: one mission's statements among other log entries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from missions.evidence import dsse
from missions.evidence.bundle import InMemoryLog, LoggedStatement, Snapshot, bundle_build
from missions.evidence.keys import Ed25519Signer

ORIGIN = "tms-console.example/evidence"
MISSION = "M-7"
SUBJECT = f"urn:tms-console:mission:{MISSION}"
SNAPSHOT_NAME = f"urn:tms-console:telemetry-snapshot:{MISSION}:1"
EVENTS = [
    {"at": "2026-11-26T05:00:00Z", "lat": 32.7767, "lon": -96.797, "speed_kph": 88.5},
    {"at": "2026-11-26T05:00:01Z", "lat": 32.7771, "lon": -96.7962, "speed_kph": 89.0},
    {"at": "2026-11-26T05:00:02Z", "lat": 32.7775, "lon": -96.7954, "speed_kph": 89.25},
]


@dataclass
class Built:
    signer: Ed25519Signer
    log: InMemoryLog
    envelopes: list[tuple[int, dict[str, Any]]]  # (leaf index, envelope) of the bundled statements
    snapshot_jsonl: str
    bundle: bytes

    @property
    def doc(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.bundle)
        return loaded


def dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")


def build(signer: Ed25519Signer | None = None, statement_signer: Ed25519Signer | None = None) -> Built:
    """Nine log entries; the bundle holds four of them (leaves 1, 3, 4, 6) and the size-9 checkpoint."""
    signer = signer or Ed25519Signer.generate()
    statement_signer = statement_signer or signer
    log = InMemoryLog(ORIGIN, signer)

    def noise(n: int) -> None:
        other = dsse.mission_assignment_statement(mission_ref=f"OTHER-{n}", record={"n": n})
        log.append(dsse.statement_sign(other, [signer]))

    jsonl = dsse.snapshot_encode(EVENTS)
    ours = [
        dsse.mission_assignment_statement(
            mission_ref=MISSION, record={"mission": MISSION, "carrier": "acme-autonomous", "vehicle": "TX-19"}
        ),
        dsse.autonomy_mode_change_statement(
            mission_ref=MISSION, from_mode="autonomous", to_mode="remote_assist", record={"mission": MISSION, "n": 1}
        ),
        dsse.telemetry_snapshot_statement(snapshot_name=SNAPSHOT_NAME, mission_ref=MISSION, events_jsonl=jsonl),
        dsse.mission_outcome_statement(mission_ref=MISSION, outcome="completed", record={"mission": MISSION}),
    ]
    envelopes: list[tuple[int, dict[str, Any]]] = []
    plan = ["noise", 0, "noise", 1, 2, "noise", 3, "noise", "noise"]
    for n, step in enumerate(plan):
        if step == "noise":
            noise(n)
        else:
            assert isinstance(step, int)
            envelope = dsse.statement_sign(ours[step], [statement_signer])
            envelopes.append((log.append(envelope), envelope))
    assert log.size == 9
    bundle = bundle_build(
        subject=SUBJECT,
        statements=[log.logged(envelope, index) for index, envelope in envelopes],
        checkpoint_note=log.checkpoint(),
        public_keys=dict.fromkeys([signer.public_key_bytes, statement_signer.public_key_bytes]),
        snapshots=[Snapshot(SNAPSHOT_NAME, jsonl)],
    )
    return Built(signer, log, envelopes, jsonl, bundle)


def logged_dict(entry: LoggedStatement) -> dict[str, Any]:
    return entry.as_dict()
