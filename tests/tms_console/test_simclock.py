"""The simulated clock shared by every process of the product (tms_console/simclock.py).

The processes here are real ones started as the product's are (Django set up, the app's ``ready`` run),
one of them forked as Celery's prefork pool forks its children; the controller moves the clock by
writing the file, and each process must report the new instant.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from tms_console import simclock

BASE_DIR = Path(__file__).resolve().parents[2]

# A product process that answers "now" with its wall time, and "fork" by forking a child that answers too.
PROBE = r"""
import json, os, sys, time
import django
django.setup()
from django.utils import timezone

def answer(tag):
    sys.stdout.write(json.dumps({"who": tag, "now": timezone.now().isoformat(), "time": time.time(),
                                 "monotonic": time.monotonic()}) + "\n")
    sys.stdout.flush()

for line in sys.stdin:
    command = line.strip()
    if command == "now":
        answer("parent")
    elif command == "fork":
        pid = os.fork()
        if pid == 0:
            time.sleep(float(os.environ["PROBE_CHILD_WAIT"]))  # the controller moves the clock meanwhile
            answer("child")
            os._exit(0)
        os.waitpid(pid, 0)
    elif command == "exit":
        break
"""


@pytest.fixture
def clock_file(tmp_path: Path) -> Path:
    return tmp_path / "clock"


def probe(clock_file: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        simclock.ENV_FILE: str(clock_file),
        "DJANGO_SETTINGS_MODULE": "tms_console.settings_test",
        "PROBE_CHILD_WAIT": "0.5",
    }
    return subprocess.Popen(
        [sys.executable, "-c", PROBE], cwd=BASE_DIR, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def ask(proc: subprocess.Popen[str], command: str) -> dict[str, object]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    answer: dict[str, object] = json.loads(proc.stdout.readline())
    return answer


def test_every_process_reads_the_simulated_instant_and_follows_its_moves(clock_file: Path) -> None:
    start = datetime(2027, 3, 1, 6, 0, tzinfo=UTC)
    simclock.clock_write(clock_file, start)
    proc = probe(clock_file)
    try:
        first = ask(proc, "now")
        assert first["now"] == start.isoformat()
        time.sleep(0.3)  # real time passes; the simulated clock stands still until it is moved
        still = ask(proc, "now")
        assert still["now"] == start.isoformat()
        assert float(str(still["monotonic"])) - float(str(first["monotonic"])) >= 0.25  # timers stay real

        later = start + timedelta(days=2, hours=3)
        simclock.clock_write(clock_file, later)
        time.sleep(simclock.clock_settle_seconds() + 0.2)
        moved = ask(proc, "now")
        assert moved["now"] == later.isoformat()
        assert moved["time"] == later.timestamp()

        # A forked child (Celery's prefork pool) follows the moves made after the fork.
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("fork\n")
        proc.stdin.flush()
        time.sleep(0.1)
        after_fork = later + timedelta(minutes=30)
        simclock.clock_write(clock_file, after_fork)
        child = json.loads(proc.stdout.readline())
        assert child["who"] == "child"
        assert child["now"] == after_fork.isoformat()
        assert ask(proc, "now")["now"] == after_fork.isoformat()
        ask_exit = proc.stdin
        ask_exit.write("exit\n")
        ask_exit.flush()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_process_refuses_a_clock_file_it_cannot_read(clock_file: Path) -> None:
    clock_file.write_text("next tuesday\n")
    with pytest.raises(simclock.SimClockError, match="not an ISO 8601 instant"):
        simclock.clock_read(clock_file)
    clock_file.write_text("2027-03-01T06:00:00\n")
    with pytest.raises(simclock.SimClockError, match="without a UTC offset"):
        simclock.clock_read(clock_file)
    with pytest.raises(simclock.SimClockError, match="cannot read"):
        simclock.clock_read(clock_file.with_name("missing"))
    with pytest.raises(simclock.SimClockError, match="time zone"):
        simclock.clock_write(clock_file, datetime(2027, 3, 1))  # naive: refused


def test_a_process_with_a_bad_clock_file_does_not_start(clock_file: Path) -> None:
    clock_file.write_text("garbage\n")
    env = {**os.environ, simclock.ENV_FILE: str(clock_file), "DJANGO_SETTINGS_MODULE": "tms_console.settings_test"}
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=BASE_DIR, env=env, capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "not an ISO 8601 instant" in run.stderr


def test_deploy_check_refuses_a_simulated_clock(monkeypatch: pytest.MonkeyPatch, clock_file: Path) -> None:
    from tms_console.checks import simulated_clock_check

    assert simulated_clock_check() == []
    monkeypatch.setenv(simclock.ENV_FILE, str(clock_file))
    problems = simulated_clock_check()
    assert [p.id for p in problems] == ["tms_console.E002"]
    with pytest.raises(SystemCheckError, match="TMS_SIM_CLOCK_FILE"):
        call_command("check", "--deploy", "--fail-level", "ERROR")
