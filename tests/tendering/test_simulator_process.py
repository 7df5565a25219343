"""The simulator as a separate process: ``manage.py run_carrier_sim`` serves the contract over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from missions.simulators.carrier import policy_parse

BASE_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture
def sim_process() -> Iterator[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tms_console.settings_test", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_carrier_sim",
            "--port",
            "0",
            "--policy",
            "counter=1",
            "--client-id",
            "proc-carrier",
            "--client-secret",
            "proc-secret",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "carrier simulator on http://" in line, line
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_command_serves_oauth_tenders_and_faults(sim_process: str) -> None:
    url = sim_process
    denied = httpx.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("proc-carrier", "no"))
    assert denied.status_code == 401 and denied.json()["error"] == "invalid_client"
    token = httpx.post(
        f"{url}/oauth/token", data={"grant_type": "client_credentials"}, auth=("proc-carrier", "proc-secret")
    ).json()["access_token"]
    assert httpx.get(f"{url}/health").status_code == 401
    assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {token}"}).json() == {"status": "ok"}

    missing_key = httpx.post(f"{url}/tenders", json={}, headers={"Authorization": f"Bearer {token}"})
    assert missing_key.status_code == 400

    assert httpx.post(f"{url}/_faults", json={"error_burst": 1}).status_code == 200
    assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {token}"}).status_code == 503
    assert httpx.get(f"{url}/health", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_command_serves_the_seeded_demo_carriers(sim_process: str) -> None:
    from tms_console.demo import carrier_sim_client_secret

    slug = "lonestar-autonomous"
    response = httpx.post(
        f"{sim_process}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(slug, carrier_sim_client_secret(slug)),
    )
    assert response.status_code == 200
    bearer = {"Authorization": f"Bearer {response.json()['access_token']}"}
    ping = httpx.get(f"{sim_process}/carriers/{slug}/vehicles/LSA-101/ping", headers=bearer)
    assert ping.status_code == 200 and ping.json()["vehicle_id"] == "LSA-101"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("accept=1", {"accept": 1.0, "reject": 0.0, "counter": 0.0}),
        ("accept=0.7,reject=0.2,counter=0.1", {"accept": 0.7, "reject": 0.2, "counter": 0.1}),
    ],
)
def test_policy_parse(text: str, expected: dict[str, float]) -> None:
    assert policy_parse(text) == expected


@pytest.mark.parametrize("text", ["", "accept=0", "maybe=1", "accept=-1"])
def test_policy_parse_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        policy_parse(text)
