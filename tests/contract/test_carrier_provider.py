"""Provider side of the carrier pact: the committed pact file verified against the carrier simulator.

The simulator (missions/simulators/carrier) serves on a free loopback port; Pact's verifier replays every
interaction of tests/contract/pacts/tms-console-carrier-api.json against it, with each interaction's
provider states set up by tests/contract/carrier_states.py, and compares the answers with the pact.
The last tests change one thing in what the simulator answers and check that the verification fails,
naming the interaction it broke: the pact is what keeps the simulator (and a real carrier held to it)
honest with the console.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pact import Verifier

from missions.simulators.carrier import CarrierSimulator, SimConfig
from missions.simulators.carrier.state import SimTender
from tests.contract import carrier_pact as cp
from tests.contract.carrier_states import CarrierStates
from tests.contract.pactfiles import PACT_DIR, UPDATE, pact_file_check

PACT_FILE = PACT_DIR / f"{cp.CONSUMER}-{cp.PROVIDER}.json"


@dataclass
class Verification:
    ok: bool
    output: str
    results: dict[str, Any]
    states: list[tuple[str, str]]

    def failed_descriptions(self) -> set[str]:
        """The descriptions of the interactions that failed (the verifier names each with its states first)."""
        named = [str(error.get("interaction", "")) for error in self.results.get("errors", [])]
        known = json.loads(PACT_FILE.read_text())["interactions"]
        descriptions = {interaction["description"] for interaction in known}
        failed = {d for d in descriptions for name in named if name == d or name.endswith(f" - {d}")}
        assert len(failed) == len(named), f"failures not matched to interactions: {named}"
        return failed


def verify_against(sim: CarrierSimulator) -> Verification:
    verifier = Verifier(cp.PROVIDER, host="127.0.0.1").add_transport(url=sim.url).add_source(PACT_FILE)
    verifier.set_error_on_empty_pact(enabled=True)
    with CarrierStates(sim) as states:
        verifier.state_handler(states.url, teardown=True, body=True)
        try:
            verifier.verify()
            ok = True
        except RuntimeError:
            ok = False
        return Verification(ok, verifier.output(strip_ansi=True), verifier.results, list(states.seen))


@pytest.fixture(scope="module", autouse=True)
def _pact_regenerated(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With PACT_UPDATE=1 the file is rewritten before it is verified (the consumer tests may run later)."""
    if UPDATE:
        pact_file_check(cp.carrier_pact(*cp.INTERACTIONS), tmp_path_factory.mktemp("pact"))


@pytest.fixture
def sim() -> Iterator[CarrierSimulator]:
    simulator = CarrierSimulator(SimConfig(policy={"accept": 1.0}, seed=7, timeout_hold_seconds=3.0)).start()
    try:
        yield simulator
    finally:
        simulator.stop()


def test_the_simulator_honours_the_consoles_pact(sim: CarrierSimulator) -> None:
    verification = verify_against(sim)
    assert verification.ok, verification.output[-6000:]
    assert verification.failed_descriptions() == set()
    interactions = verification.output.count("returns a response which")
    assert interactions == len(cp.INTERACTIONS), verification.output[-3000:]
    setups = {state for state, action in verification.states if action == "setup" and state}
    assert "the carrier answered a tender" in setups
    assert "the carrier answers the next call with 503" in setups
    # Every interaction saw its states torn down: no fault or tender leaked into the next one.
    assert sim.tender_count() == 0
    assert sim.state.faults.error_burst == 0


def test_a_renamed_field_in_the_simulators_answer_breaks_the_verification(
    sim: CarrierSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    public = SimTender.public

    def renamed(self: SimTender) -> dict[str, Any]:
        body = public(self)
        body["state"] = body.pop("status")  # the kind of change a carrier's new API version makes
        return body

    monkeypatch.setattr(SimTender, "public", renamed)
    verification = verify_against(sim)
    assert not verification.ok
    # Exactly the interactions whose answer is a tender's state fail, each for the missing field.
    assert verification.failed_descriptions() == {
        "a tender submitted with an Idempotency-Key, answered in the response",
        "the same tender submitted again under its Idempotency-Key",
        "a status poll of a tender the carrier accepted",
        "a status poll of a tender the carrier countered",
        "a status poll of a tender not answered yet",
        "a cancel of a tender not answered yet",
    }
    assert verification.output.count("Actual map is missing the following keys: status") == 6


def test_a_changed_status_code_breaks_the_verification(sim: CarrierSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from missions.simulators.carrier import server

    real = server._Handler._problem

    def not_found_as_400(self: Any, status: int, title: str, detail: str, **kwargs: Any) -> None:
        real(self, 400 if status == 404 else status, "Bad Request" if status == 404 else title, detail, **kwargs)

    monkeypatch.setattr(server._Handler, "_problem", not_found_as_400)
    verification = verify_against(sim)
    assert not verification.ok
    assert verification.failed_descriptions() == {"a status poll of a tender the carrier does not know"}
