"""``manage.py fault_proxy`` as a process, and its HTTP control endpoint."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from missions.simulators.faultproxy import FaultProxy
from missions.simulators.faultproxy_control import ControlServer
from tests.chaos.proxy import EchoServer

BASE_DIR = Path(__file__).resolve().parents[2]


def _address(url_or_pair: str) -> tuple[str, int]:
    host, _, port = url_or_pair.removeprefix("http://").rpartition(":")
    return host, int(port)


@pytest.fixture
def control(echo_server: EchoServer) -> Iterator[tuple[FaultProxy, str]]:
    proxy = FaultProxy("127.0.0.1", echo_server.port).start()
    server = ControlServer(proxy).start()
    yield proxy, server.url
    server.stop()
    proxy.stop()


def test_control_endpoint_sets_reads_and_heals(control: tuple[FaultProxy, str]) -> None:
    proxy, url = control
    answer = httpx.post(f"{url}/faults", json={"latency_ms": 250, "direction": "up", "blackhole": True})
    assert answer.status_code == 200
    assert answer.json()["up"]["latency_seconds"] == 0.25 and answer.json()["blackhole"] is True
    assert proxy.faults().up.latency_seconds == 0.25 and proxy.faults().blackhole
    assert httpx.get(f"{url}/faults").json() == answer.json()

    refused = httpx.post(f"{url}/faults", json={"latency": 5})
    assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
    assert "latency" in refused.json()["detail"]
    assert httpx.post(f"{url}/faults", json=[1]).status_code == 400
    assert httpx.post(f"{url}/faults", json={"direction": "sideways"}).status_code == 400

    assert httpx.post(f"{url}/heal").json()["blackhole"] is False
    assert not proxy.faults().blackhole and proxy.faults().up.latency_seconds == 0.0
    assert httpx.get(f"{url}/stats").json()["connections_accepted"] == 0


def test_command_proxies_and_takes_faults_at_run_time(echo_server: EchoServer) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tms_console.settings_test", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "manage.py", "fault_proxy", "--upstream", f"127.0.0.1:{echo_server.port}"]
    proc = subprocess.Popen(
        [*command, "--listen", "0", "--control", "0"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        listening, controlled = proc.stdout.readline(), proc.stdout.readline()
        assert listening.startswith("fault proxy: ") and controlled.startswith("fault proxy control: "), listening
        address = _address(listening.split()[2])
        control_url = controlled.split()[3]

        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"ping")
            assert sock.recv(4) == b"ping"

        httpx.post(f"{control_url}/faults", json={"latency_ms": 300}).raise_for_status()
        with socket.create_connection(address, timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"slow")
            assert sock.recv(4) == b"slow"
            assert time.monotonic() - started >= 0.6  # 300 ms each way

        assert httpx.get(f"{control_url}/stats").json()["connections_accepted"] == 2
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_command_refuses_a_bad_upstream() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tms_console.settings_test"}
    done = subprocess.run(
        [sys.executable, "manage.py", "fault_proxy", "--upstream", "nowhere"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "HOST:PORT" in done.stderr
