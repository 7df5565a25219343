"""Provider states of the carrier pact, set up on a running carrier simulator.

The Pact verifier posts each state of an interaction (``{"state", "params", "action"}``) to this small HTTP
endpoint before replaying the interaction, and takes the JSON object it answers as the state's values:
the verifier puts ``${accessToken}`` and ``${ref}`` of the pact's requests from them. So the states use the
simulator as a carrier's own client would: a token from ``POST /oauth/token``, a tender answered through
``POST /tenders``, books restored through ``POST /_tenders``, a fault through ``POST /_faults``. The two
things the simulator has no HTTP switch for (its answer policy, withdrawing a tender) go through its
in-process controls. After each interaction (``teardown``) faults, tenders and policy are reset.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from missions.simulators.carrier import CarrierSimulator
from tests.contract import carrier_pact as cp

ACCEPT_ONLY = {"accept": 1.0}


class UnknownState(Exception):
    pass


class CarrierStates:
    """Serves the state-change endpoint for ``sim`` on a free loopback port (``with`` starts and stops it)."""

    def __init__(self, sim: CarrierSimulator) -> None:
        self.sim = sim
        self.seen: list[tuple[str, str]] = []  # (state, action), in the order the verifier asked
        states = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                try:
                    values = states.change(
                        str(request.get("state") or ""), str(request.get("action") or "setup"), request.get("params")
                    )
                except (UnknownState, AssertionError, httpx.HTTPError) as exc:
                    raw, status = json.dumps({"error": str(exc)}).encode(), 500
                else:
                    raw, status = json.dumps(values).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="pact-states", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/_pact/state"

    def __enter__(self) -> CarrierStates:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- the states ----------------------------------------------------------------------------

    def change(self, state: str, action: str, params: dict[str, Any] | None) -> dict[str, Any]:
        self.seen.append((state, action))
        params = params or {}
        if action == "teardown":
            self.reset()
            return {}
        if state == "":  # the verifier's generic set-up call, before an interaction without states
            return {}
        if state == "the carrier knows the console's client credentials":
            assert params.get("client_id") == self.sim.state.config.client_id, "the pact names another client"
            return {}
        if state == "the console holds an access token":
            return {"accessToken": self._token()}
        if state == "the carrier accepts every tender":
            self.sim.policy_set(ACCEPT_ONLY)
            return {}
        if state == "the carrier answered a tender":
            return {"ref": self._answered(str(params["answer"]))}
        if state == "the carrier holds a tender it has not answered yet":
            return {"ref": self._restored(params)}
        if state == "the carrier withdrew a tender":
            ref = self._restored(params)
            self.sim.tender_withdraw(ref)
            return {"ref": ref}
        if state == "the carrier runs a vehicle":
            assert params.get("vehicle_id") in self.sim.state.config.vehicles, "the simulator has no such vehicle"
            return {}
        if state == "the carrier answers the next call with 503":
            self._post("/_faults", json={"error_burst": 1})
            return {}
        raise UnknownState(f"no set-up for the provider state {state!r}")

    def reset(self) -> None:
        self.sim.faults_clear()
        self.sim.tenders_forget()
        self.sim.policy_set(ACCEPT_ONLY)

    # -- through the simulator's API ----------------------------------------------------------------

    def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.sim.url}{path}", timeout=5.0, **kwargs)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def _token(self) -> str:
        config = self.sim.state.config
        body = self._post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(config.client_id, config.client_secret)
        )
        return str(body["access_token"])

    def _answered(self, answer: str) -> str:
        """Submit a tender the way the console does; the simulator answers it with ``answer``."""
        self.sim.policy_set({answer: 1.0})
        body = self._post(
            "/tenders",
            json=cp.TENDER_BODY,
            headers={"Authorization": f"Bearer {self._token()}", "Idempotency-Key": str(uuid.uuid4())},
        )
        self.sim.policy_set(ACCEPT_ONLY)
        return str(body["ref"])

    def _restored(self, params: dict[str, Any]) -> str:
        """Put a tender in the simulator's books as received and not answered (its ``/_tenders`` restore)."""
        ref = f"SIM-PACT-{uuid.uuid4().hex[:8]}"
        key = str(params.get("idempotency_key") or uuid.uuid4())
        self._post("/_tenders", json={"tenders": [{"ref": ref, "idempotency_key": key, "request": params["request"]}]})
        return ref
