"""The `make run` supervisor: one output stream, and every child stops with it.

The real children (daphne, Celery) are replaced by small Python processes so
the test is about supervision only: a stand-in "web" listens on a free port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port

BASE_DIR = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; its parent (the supervisor) has gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _start(tmp_path: Path, port: int, *, sleeper_exit_after: float | None = None) -> subprocess.Popen[str]:
    sleeper = "import time; print('sleeper up', flush=True); time.sleep(600)"
    if sleeper_exit_after is not None:
        sleeper = f"import time, sys; print('sleeper up', flush=True); time.sleep({sleeper_exit_after}); sys.exit(3)"
    specs = [
        {"name": "web", "argv": [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]},
        {"name": "sleeper", "argv": [sys.executable, "-c", sleeper]},
        # A client of the web server: started only once "web" listens.
        {"name": "client", "argv": [sys.executable, "-c", "import time; time.sleep(600)"], "after_web": True},
        # Ignores SIGTERM: the supervisor must escalate to SIGKILL once its drain time is over.
        {
            "name": "stubborn",
            "argv": [
                sys.executable,
                "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                " print('stubborn up', flush=True); time.sleep(600)",
            ],
            "drain_seconds": 1.0,
        },
        # Ends itself at its drain deadline (tms_console.shutdown's exit status): reported, not killed.
        {
            "name": "drainer",
            "argv": [
                sys.executable,
                "-c",
                "import os, signal, time; signal.signal(signal.SIGTERM, lambda *_: os._exit(70));"
                " print('drainer up', flush=True); time.sleep(600)",
            ],
            "drain_seconds": 30.0,
        },
    ]
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(BASE_DIR / 'scripts')!r})\n"
        "import run_all\n"
        f"specs = [run_all.ProcessSpec(**s) for s in json.loads({json.dumps(json.dumps(specs))})]\n"
        f"sys.exit(run_all.run(specs, host='127.0.0.1', port={port}))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _child_pids(output: str) -> dict[str, int]:
    pids = {}
    for line in output.splitlines():
        if "| started " in line:
            name = line.split("| started ", 1)[1].split(" ", 1)[0]
            pids[name] = int(line.split("(pid ", 1)[1].split(")", 1)[0])
    return pids


def _wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("stand-in web server never listened")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_child(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    proc = _start(tmp_path, port)
    try:
        _wait_listening(port)
        time.sleep(1.0)  # let the supervisor print its banner
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert f"running: http://127.0.0.1:{port}/" in output
    assert f"received {sig.name}" in output
    # Escalated to SIGKILL after its own drain time, and named; the others stopped on SIGTERM.
    assert "stubborn did not stop within its drain time (1s); killing it (SIGKILL)" in output
    assert "all processes stopped; killed after their drain time: stubborn" in output
    assert "drainer ended itself at its drain deadline" in output
    assert "web stopped (" in output and "sleeper stopped (" in output
    pids = _child_pids(output)
    assert set(pids) == {"web", "sleeper", "stubborn", "client", "drainer"}
    assert output.index("| started client") > output.index(f"running: http://127.0.0.1:{port}/")
    assert not [name for name, pid in pids.items() if _alive(pid)]
    # Children's output arrives prefixed with their name.
    assert any(line.startswith("sleeper ") and "| sleeper up" in line for line in output.splitlines())


def test_a_child_that_dies_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(tmp_path, port, sleeper_exit_after=2.0)
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, output
    assert "ERROR: sleeper exited with status 3 unexpectedly; stopping everything." in output
    pids = _child_pids(output)
    assert not [name for name, pid in pids.items() if _alive(pid)]


def test_optional_processes_need_their_command(monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(BASE_DIR / "scripts"))
    try:
        import run_all
    finally:
        sys.path.remove(str(BASE_DIR / "scripts"))
    monkeypatch.delenv("MQTT_URL", raising=False)
    names = {s.name for s in run_all.build_specs(host="127.0.0.1", port=8000, commands=set())}
    assert names == {"web", "worker", "beat"}
    everything = {"run_carrier_sim", "simulate_fleet", "mqtt_ingest"}
    names = {s.name for s in run_all.build_specs(host="127.0.0.1", port=8000, commands=everything)}
    assert names == {"web", "worker", "beat", "carriers", "fleet"}
    fleet = next(s for s in run_all.build_specs(host="127.0.0.1", port=8123, commands=everything) if s.name == "fleet")
    assert fleet.after_web
    assert fleet.argv[-2:] == ["--console-url", "http://127.0.0.1:8123"]
    monkeypatch.setenv("MQTT_URL", "mqtt://127.0.0.1:1883")
    names = {s.name for s in run_all.build_specs(host="127.0.0.1", port=8000, commands=everything)}
    assert "mqtt" in names
    # The event bus relay: only with a NATS server to publish to.
    monkeypatch.delenv("NATS_URL", raising=False)
    names = {s.name for s in run_all.build_specs(host="127.0.0.1", port=8000, commands={"events_relay"})}
    assert "bus" not in names
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:4222")
    relay = next(
        s for s in run_all.build_specs(host="127.0.0.1", port=8000, commands={"events_relay"}) if s.name == "bus"
    )
    assert relay.argv[-1] == "events_relay" and relay.drain_seconds == 12.0


def test_each_child_is_given_its_stated_drain_time(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    sys.path.insert(0, str(BASE_DIR / "scripts"))
    try:
        import run_all
    finally:
        sys.path.remove(str(BASE_DIR / "scripts"))
    from tms_console.shutdown import BEAT_DRAIN_SECONDS, SIMULATOR_DRAIN_SECONDS

    settings.WEB_DRAIN_SECONDS, settings.WORKER_DRAIN_SECONDS, settings.MQTT_DRAIN_SECONDS = 7.0, 21.0, 9.0
    monkeypatch.setenv("MQTT_URL", "mqtt://127.0.0.1:1883")
    everything = {"run_carrier_sim", "simulate_fleet", "mqtt_ingest"}
    drains = {s.name: s.drain_seconds for s in run_all.build_specs(host="127.0.0.1", port=8000, commands=everything)}
    assert drains == {
        "web": 7.0,
        "worker": 21.0,
        "beat": BEAT_DRAIN_SECONDS,
        "carriers": SIMULATOR_DRAIN_SECONDS,
        "fleet": SIMULATOR_DRAIN_SECONDS,
        "mqtt": 9.0,
    }
